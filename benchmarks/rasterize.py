"""Rasterizer benchmark: forward and forward+backward time, memory and blend rate per backend.

For every N (Gaussians), image size and channel count D it renders one random scene (Gaussians in front of
the camera, sized for about ``--blends-per-pixel`` composited Gaussians per pixel, see
:mod:`distill3d.render.random_scene`) with ``colors [N, D]`` and reports, per available backend:

- forward time (inputs without gradient) and forward+backward time (loss = sum of a random projection
  of render and alpha), medians over ``--repeats`` runs after one warm-up (the torch reference: one cold run);
- peak memory above the idle process (CPU: resident set size sampled every 5 ms; CUDA: the allocator's
  peak);
- blends/s/core: (pixel, Gaussian) pairs actually composited (counted once per scene with the torch
  reference) divided by the core-seconds spent: the process CPU time on CPU (all threads; unlike wall
  time it does not count waiting while other jobs hold the cores, though cache contention and OpenMP
  spin-waiting still inflate it), the wall time on CUDA;
- native/torch: the torch reference time over the native time (wall and CPU), measured in the same run;
- per-stage times of the native backend (wall and CPU medians, each stage run alone on the same inputs):
  projection, tile intersection + depth sort, tile offsets, compositing forward, compositing backward,
  projection backward; ``other`` is the rest of a ``rasterize`` call (validation, colour buffer assembly);
- peak bytes per Gaussian of forward+backward (peak memory over N);
- with ``--baseline OLD.json`` (the same script run on an older tree, e.g. one exported with
  ``git archive``): the old native numbers of the same rows and new/old ratios of time and blend rate.

The torch reference is only timed up to ``--torch-max-n`` / ``--torch-max-size`` / ``--torch-max-channels``
(it needs minutes per call beyond them); the table marks the others "-". Rows are checkpointed to the JSON
file as they finish; ``--resume`` continues an interrupted run.

    python benchmarks/rasterize.py            # full grid, writes benchmarks/results/rasterize.json
    python benchmarks/rasterize.py --quick    # N = 10k and 100k at 256^2, D = 3 and 16
    python benchmarks/rasterize.py --n-gaussians 100000 1000000 --sizes 512 --channels 16 128 --backends native
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from distillcore.serialization import write_json_atomic
from distill3d.render import isect_offset_encode, isect_tiles, native, project_gaussians, rasterize
from distill3d.render.compositing import count_blends
from distill3d.render.random_scene import SceneConfig, random_scene
from distill3d.render.tiles import tile_grid
from distill3d.render.rasterize import available_backends

RESULTS = Path(__file__).resolve().parent / "results" / "rasterize.json"


@dataclass(frozen=True)
class BenchConfig:
    n_gaussians: tuple[int, ...] = (10_000, 100_000, 500_000, 1_000_000)
    sizes: tuple[int, ...] = (256, 512)
    channels: tuple[int, ...] = (3, 16, 64, 128)
    backends: tuple[str, ...] = ("native", "torch", "gsplat")
    repeats: int = 3
    blends_per_pixel: float = 30.0
    torch_max_n: int = 10_000
    torch_max_size: int = 256
    torch_max_channels: int = 16
    device: str = "cpu"
    stage_repeats: int = 3  # runs per stage of the native per-stage profile (median reported)


class PeakMemory:
    """Peak memory (bytes) above the level at entry: CUDA allocator peak, or sampled CPU resident set."""

    def __init__(self, device: str, interval_s: float = 0.005):
        self.device, self.interval_s, self.peak = device, interval_s, 0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, self._rss())
            time.sleep(self.interval_s)

    @staticmethod
    def _return_freed_memory() -> None:
        """glibc keeps freed heap memory mapped, and the next allocations (the warm-up's, an earlier row's)
        reuse it without raising the resident set: give it back so the sampled peak counts them."""
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc: nothing to return, the peak may read low
            pass

    def __enter__(self) -> "PeakMemory":
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._return_freed_memory()
            self._base = self._max = self._rss()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self._base
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._max, self._rss()) - self._base


@dataclass
class Timing:
    wall_s: float  # median wall-clock seconds
    cpu_s: float  # median CPU seconds of the whole process (all threads)
    peak_bytes: int


def timed_call(fn: Callable[[], None], device: str) -> tuple[float, float]:
    """Wall and process CPU seconds of one ``fn()`` (on CUDA, with the device's queued work)."""
    if device == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def _timed(fn: Callable[[], None], repeats: int, warmup: bool, device: str) -> Timing:
    """Medians of ``fn``'s wall and process CPU time over ``repeats`` runs (after an optional warm-up)."""
    if warmup:
        fn()
    walls, cpus = [], []
    with PeakMemory(device) as memory:
        for _ in range(repeats):
            wall, cpu = timed_call(fn, device)
            walls.append(wall)
            cpus.append(cpu)
    return Timing(statistics.median(walls), statistics.median(cpus), memory.peak)


def _scene_blends(scene: dict, tile_size: int = 16) -> tuple[int, float]:
    """Composited (pixel, Gaussian) pairs of the scene and their count per pixel (torch reference stages)."""
    width, height = scene["width"], scene["height"]
    radii, means2d, depths, conics, _ = project_gaussians(
        scene["means"], scene["quats"], scene["scales"], scene["viewmats"], scene["Ks"], width, height
    )
    tile_width, tile_height = tile_grid(width, height, tile_size)
    _, isect_ids, flatten_ids = isect_tiles(means2d, radii, depths, tile_size, tile_width, tile_height)
    offsets = isect_offset_encode(isect_ids, len(radii), tile_width, tile_height)
    opacities = scene["opacities"][None].expand(len(radii), -1)
    blends = count_blends(means2d, conics, opacities, width, height, tile_size, offsets, flatten_ids)
    return blends, blends / (width * height * len(radii))


def _forward(scene: dict, backend: str) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            rasterize(**scene, backend=backend)

    return run


def _forward_backward(scene: dict, backend: str) -> Callable[[], None]:
    names = ("means", "quats", "scales", "opacities", "colors")
    leaves = {k: scene[k].clone().requires_grad_(True) for k in names}
    rest = {k: v for k, v in scene.items() if k not in names}
    gen = torch.Generator().manual_seed(0)
    weights = torch.randn(1, rest["height"], rest["width"], scene["colors"].shape[1], generator=gen).to(scene["means"])

    def run() -> None:
        for leaf in leaves.values():
            leaf.grad = None
        render, _, alpha, _ = rasterize(**leaves, **rest, backend=backend)
        ((render * weights).sum() + alpha.sum()).backward()

    return run


def _stage_profile(scene: dict, repeats: int, device: str) -> dict[str, dict[str, float]]:
    """Wall and CPU medians of each native stage run alone, as ``rasterize`` chains them (colours as given)."""
    width, height, tile_size = scene["width"], scene["height"], 16
    tile_width, tile_height = tile_grid(width, height, tile_size)
    # The stage functions rasterize() calls (unchecked: it validates once); an older tree measured with
    # --baseline may only have the checked ones.
    isect_tiles_native = getattr(native, "isect_tiles_native_unchecked", native.isect_tiles_native)
    rasterize_to_pixels_native = getattr(native, "rasterize_to_pixels_native_unchecked",
                                         native.rasterize_to_pixels_native)
    geometry = {k: scene[k].clone().requires_grad_(True) for k in ("means", "quats", "scales")}

    def project():
        return native.project_gaussians_native_unchecked(
            geometry["means"], geometry["quats"], geometry["scales"], scene["viewmats"], scene["Ks"], width, height)

    with torch.no_grad():
        radii, means2d, depths, conics, _ = native.project_gaussians_native_unchecked(
            scene["means"], scene["quats"], scene["scales"], scene["viewmats"], scene["Ks"], width, height)
        _, isect_ids, flatten_ids = isect_tiles_native(means2d, radii, depths, tile_size, tile_width, tile_height)
        offsets = native.isect_offset_encode_native(isect_ids, 1, tile_width, tile_height)
    colors = scene["colors"][None].contiguous()
    opacities = scene["opacities"][None].contiguous()
    raster_inputs = [t.clone().requires_grad_(True) for t in (means2d, conics, colors, opacities)]
    gen = torch.Generator().manual_seed(1)
    v_render = torch.randn(1, height, width, colors.shape[-1], generator=gen).to(colors)

    def composite():
        means2d_, conics_, colors_, opacities_ = raster_inputs
        return rasterize_to_pixels_native(means2d_, conics_, colors_, opacities_, width, height, tile_size, offsets,
                                          flatten_ids)

    def project_backward_setup():
        for t in geometry.values():
            t.grad = None
        _, m2, _, co, _ = project()
        return lambda: torch.autograd.backward([m2, co], [torch.ones_like(m2), torch.ones_like(co)])

    def composite_backward_setup():
        for t in raster_inputs:
            t.grad = None
        render, alpha = composite()
        return lambda: torch.autograd.backward([render, alpha], [v_render, torch.ones_like(alpha)])

    stages = {
        "project": lambda: (lambda: torch.no_grad()(project)()),
        "isect_sort": lambda: (lambda: isect_tiles_native(means2d, radii, depths, tile_size, tile_width, tile_height)),
        "offsets": lambda: (lambda: native.isect_offset_encode_native(isect_ids, 1, tile_width, tile_height)),
        "composite": lambda: (lambda: torch.no_grad()(composite)()),
        "composite_backward": composite_backward_setup,
        "project_backward": project_backward_setup,
    }
    result = {}
    for name, setup in stages.items():
        walls, cpus = [], []
        for i in range(repeats + 1):  # the first run warms up
            wall, cpu = timed_call(setup(), device)
            if i:
                walls.append(wall)
                cpus.append(cpu)
        result[name] = {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}
    return result


def _core_seconds(timing: Timing, threads: int, device: str) -> float:
    """Core-seconds spent: process CPU time on CPU (robust to other jobs sharing the cores), else wall time."""
    return timing.cpu_s if device == "cpu" else timing.wall_s * threads


def _tree_description() -> str | None:
    """The git commit of the measured ``distill3d`` (plus ``-dirty`` for local changes), if it is a checkout."""
    import subprocess

    root = Path(native.__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "diff", "--quiet", "HEAD", "--", "distill3d"]).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return f"{root} (not a git checkout)"
    return commit + ("-dirty" if dirty else "")


def _torch_allowed(config: BenchConfig, n: int, size: int, channels: int) -> bool:
    return n <= config.torch_max_n and size <= config.torch_max_size and channels <= config.torch_max_channels


def _key(row: dict) -> tuple[int, int, int]:
    return row["n_gaussians"], row["size"], row["channels"]


def _compare_baseline(row: dict, baseline: dict[tuple[int, int, int], dict]) -> None:
    """Adds the baseline's native numbers of the same row and the new/old ratios (``> 1``: faster now)."""
    old = baseline.get(_key(row), {}).get("native")
    if old is None or "native" not in row:
        return
    new = row["native"]
    row["baseline_native"] = old
    row["speedup_vs_baseline"] = {
        key: old[f"{key}_s"] / new[f"{key}_s"]
        for key in ("forward", "forward_backward", "forward_cpu", "forward_backward_cpu")
    }
    if "stages" in old and "stages" in new:
        row["stage_speedup_vs_baseline_cpu"] = {
            name: old["stages"][name]["cpu_s"] / max(new["stages"][name]["cpu_s"], 1e-9)
            for name in new["stages"] if name in old["stages"]
        }


def run(config: BenchConfig, done: list[dict], save: Callable[[list[dict]], None],
        baseline: dict[tuple[int, int, int], dict] | None = None) -> list[dict]:
    """Times every configuration not already in ``done``; calls ``save`` after each row (checkpoint)."""
    backends = [b for b in config.backends if b in available_backends(config.device)]
    threads = torch.get_num_threads() if config.device == "cpu" else 1
    rows = list(done)
    finished = {_key(row) for row in rows}
    for row in rows:
        print(_format_row(row, backends), flush=True)
    for n in config.n_gaussians:
        for size in config.sizes:
            if all((n, size, d) in finished for d in config.channels):
                continue
            base = SceneConfig(n_gaussians=n, width=size, height=size, blends_per_pixel=config.blends_per_pixel)
            blends, per_pixel = _scene_blends(random_scene(base, device=config.device))
            for d in config.channels:
                if (n, size, d) in finished:
                    continue
                scene = random_scene(base, device=config.device)
                scene["colors"] = torch.rand(n, d, generator=torch.Generator().manual_seed(d)).to(scene["means"])
                row = {"n_gaussians": n, "size": size, "channels": d, "blends": blends, "blends_per_pixel": per_pixel}
                for backend in backends:
                    if backend == "torch" and not _torch_allowed(config, n, size, d):
                        continue
                    # The torch reference takes seconds to minutes per call: one cold run is enough.
                    repeats, warmup = (1, False) if backend == "torch" else (config.repeats, True)
                    fwd = _timed(_forward(scene, backend), repeats, warmup, config.device)
                    both = _timed(_forward_backward(scene, backend), repeats, warmup, config.device)
                    row[backend] = {
                        "forward_s": fwd.wall_s,
                        "forward_backward_s": both.wall_s,
                        "forward_cpu_s": fwd.cpu_s,
                        "forward_backward_cpu_s": both.cpu_s,
                        "forward_peak_mb": fwd.peak_bytes / 2**20,
                        "forward_backward_peak_mb": both.peak_bytes / 2**20,
                        "forward_blends_per_s_per_core": blends / _core_seconds(fwd, threads, config.device),
                        "forward_backward_blends_per_s_per_core": blends / _core_seconds(both, threads, config.device),
                        "forward_backward_peak_bytes_per_gaussian": both.peak_bytes / n,
                    }
                    if backend == "native":
                        stages = _stage_profile(scene, config.stage_repeats, config.device)
                        stages["other"] = {
                            key: max(0.0, getattr(fwd, key) - sum(stages[s][key] for s in
                                                                  ("project", "isect_sort", "offsets", "composite")))
                            for key in ("wall_s", "cpu_s")
                        }
                        row[backend]["stages"] = stages
                for other in ("torch", "gsplat"):
                    if other in row and "native" in row:
                        row[f"speedup_native_vs_{other}"] = {
                            key: row[other][f"{key}_s"] / row["native"][f"{key}_s"]
                            for key in ("forward", "forward_backward", "forward_cpu", "forward_backward_cpu")
                        }
                _compare_baseline(row, baseline or {})
                rows.append(row)
                save(rows)
                print(_format_row(row, backends), flush=True)
                if "native" in row:
                    print(_format_stages(row), flush=True)
    return rows


HEADER_BACKEND = "{:>9} {:>9} {:>8} {:>8} {:>9} {:>9}"


def _header(backends: list[str]) -> str:
    head = f"{'N':>8} {'size':>5} {'D':>4} {'blend/px':>8}"
    for backend in backends:
        head += " | " + HEADER_BACKEND.format(f"{backend} fwd", "fwd+bwd", "MB fwd", "MB f+b", "Mbl/s/c", "f+b")
    return head + " | torch/native CPU time fwd, f+b | gsplat/native wall time fwd, f+b"


def _format_row(row: dict, backends: list[str]) -> str:
    line = f"{row['n_gaussians']:>8} {row['size']:>5} {row['channels']:>4} {row['blends_per_pixel']:>8.1f}"
    for backend in backends:
        r = row.get(backend)
        if r is None:
            line += " | " + HEADER_BACKEND.format(*"------")
        else:
            line += " | " + HEADER_BACKEND.format(
                f"{r['forward_s'] * 1e3:.1f}ms", f"{r['forward_backward_s'] * 1e3:.1f}ms",
                f"{r['forward_peak_mb']:.0f}", f"{r['forward_backward_peak_mb']:.0f}",
                f"{r['forward_blends_per_s_per_core'] / 1e6:.1f}", f"{r['forward_backward_blends_per_s_per_core'] / 1e6:.1f}",
            )
    speed = row.get("speedup_native_vs_torch")
    line += " | " + (f"{speed['forward_cpu']:.0f}x, {speed['forward_backward_cpu']:.0f}x" if speed else "-")
    speed = row.get("speedup_native_vs_gsplat")
    line += " | " + (f"{speed['forward']:.2f}x, {speed['forward_backward']:.2f}x" if speed else "-")
    return line


STAGES = ("project", "isect_sort", "offsets", "composite", "other", "composite_backward", "project_backward")


def _format_stages(row: dict) -> str:
    """One line of native per-stage CPU milliseconds (and old/new CPU ratios with a baseline)."""
    stages = row["native"]["stages"]
    ratios = row.get("stage_speedup_vs_baseline_cpu", {})
    parts = []
    for name in STAGES:
        part = f"{name} {stages[name]['cpu_s'] * 1e3:.1f}"
        if name in ratios:
            part += f" ({ratios[name]:.1f}x)"
        parts.append(part)
    line = "    stages CPU ms: " + ", ".join(parts)
    line += f"; f+b peak {row['native']['forward_backward_peak_bytes_per_gaussian']:.0f} B/Gaussian"
    speed = row.get("speedup_vs_baseline")
    if speed:
        line += f"; vs baseline CPU time fwd {speed['forward_cpu']:.2f}x, f+b {speed['forward_backward_cpu']:.2f}x"
    return line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a reduced grid: N in {10k, 100k}, 256^2, D in {3, 16}")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device of the scene tensors (default cpu)")
    parser.add_argument("--n-gaussians", type=int, nargs="+", help="grid of N (default: 10k, 100k, 500k, 1M)")
    parser.add_argument("--sizes", type=int, nargs="+", help="grid of square image sides (default: 256 512)")
    parser.add_argument("--channels", type=int, nargs="+", help="grid of D (default: 3 16 64 128)")
    parser.add_argument("--stage-repeats", type=int, default=3, help="timed runs per stage of the native profile")
    parser.add_argument("--baseline", type=Path,
                        help="JSON of this benchmark on an older tree: its native rows are compared row by row")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement after one warm-up (median reported)")
    parser.add_argument("--backends", nargs="+", default=["native", "torch", "gsplat"], help="backends to time (unavailable ones are skipped)")
    parser.add_argument("--blends-per-pixel", type=float, default=30.0, help="target depth complexity of the random scenes")
    parser.add_argument("--torch-max-n", type=int, default=10_000, help="largest N timed with the slow torch reference")
    parser.add_argument("--torch-max-size", type=int, default=256, help="largest image side timed with the torch reference")
    parser.add_argument("--torch-max-channels", type=int, default=16, help="largest D timed with the torch reference")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output path (default {RESULTS})")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows already in --out that were measured with the same settings; time the rest")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.stage_repeats < 1:
        parser.error("--repeats and --stage-repeats must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA build of torch and a GPU")
    config = BenchConfig(
        n_gaussians=tuple(args.n_gaussians or ((10_000, 100_000) if args.quick else BenchConfig.n_gaussians)),
        sizes=tuple(args.sizes or ((256,) if args.quick else BenchConfig.sizes)),
        channels=tuple(args.channels or ((3, 16) if args.quick else BenchConfig.channels)),
        backends=tuple(args.backends),
        repeats=args.repeats,
        stage_repeats=args.stage_repeats,
        blends_per_pixel=args.blends_per_pixel,
        torch_max_n=args.torch_max_n,
        torch_max_size=args.torch_max_size,
        torch_max_channels=args.torch_max_channels,
        device=args.device,
    )
    done = []
    if args.resume and args.out.exists():
        previous = json.loads(args.out.read_text())
        same = {k: v for k, v in previous["config"].items() if k not in ("n_gaussians", "sizes", "channels")}
        mine = {k: v for k, v in json.loads(json.dumps(asdict(config))).items() if k not in ("n_gaussians", "sizes", "channels")}
        if same == mine:
            done = previous["rows"]
        else:
            print(f"--resume: {args.out} was measured with other settings; starting afresh")

    baseline, baseline_info = {}, None
    if args.baseline is not None:
        previous = json.loads(args.baseline.read_text())
        baseline = {_key(row): row for row in previous["rows"]}
        baseline_info = {"path": str(args.baseline), "machine": previous.get("machine"),
                         "tree": previous.get("tree")}

    def save(rows: list[dict]) -> None:
        result = {
            "config": asdict(config),
            "tree": _tree_description(),
            "baseline": baseline_info,
            "machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "threads": torch.get_num_threads(), "load_average": os.getloadavg(), "torch": torch.__version__,
                        "gpu": torch.cuda.get_device_name() if config.device == "cuda" else None},
            "rows": rows,
        }
        write_json_atomic(args.out, result)

    backends = [b for b in config.backends if b in available_backends(config.device)]
    print(f"device {config.device}, {torch.get_num_threads()} threads, backends {backends}, load average "
          f"{os.getloadavg()[0]:.1f}; times are wall-clock medians; Mbl/s/c = million composited (pixel, Gaussian) "
          f"pairs per CPU-second (per core; on CUDA per GPU-second); '-' = not run (torch reference only up to N={config.torch_max_n}, "
          f"{config.torch_max_size}^2, D={config.torch_max_channels})")
    print(_header(backends))
    save(run(config, done, save, baseline))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
