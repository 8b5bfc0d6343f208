"""Reliability probe: bad input through the real command lines (and a few Python APIs), classified.

Each case runs in its own process (``.venv/bin/distill3d``, ``.venv/bin/graphdistill`` or ``python -c``)
against small fixtures built once in a temporary folder (a 5-view copy of the bundled scene, a field
trained for 3 steps, 6 simulated LiDAR scans, a 1-step detector, tiny graph runs). Outcomes:

- ``clear``: exit code 2 and a one-line ``error:`` message (API cases: a ValueError / FileNotFoundError /
  KeyError / TypeError, printed as one line by the case's wrapper);
- ``traceback``: a Python traceback on stderr;
- ``silent``: exit 0 on input that should have been refused (a wrong result written without a word);
- ``hang``: still running at the case's timeout;
- ``data_lost``: a file that had to survive (a checkpoint, a previous run) was changed or removed;
- ``payload``: a crafted file made the program run code (its marker file appeared);
- ``other``: any other exit (e.g. exit 1 with a message, or a fixture that could not be built).

Prints a markdown table (category, cases, clear errors, tracebacks, silent wrong outputs, hangs, data
lost, payloads executed) and writes every case with its outcome to ``benchmarks/results/reliability.json``.

    .venv/bin/python tools/reliability_probe.py [--jobs 2] [--only CATEGORY ...] [--work DIR --keep]

A kept ``--work`` folder is reused: fixtures already built there are not built again (about 7 minutes on
2 busy cores); remove the cases' own outputs from it first. The whole catalogue takes about 15 minutes
there, dominated by interpreter start-up (importing torch) of each command.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Callable

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
PYTHON = sys.executable
SCENE = ROOT / "distill3d" / "scenes" / "default"
RESULTS = ROOT / "benchmarks" / "results" / "reliability.json"
OUTCOMES = ("clear", "traceback", "silent", "hang", "data_lost", "payload", "other")
# the file each fixture leaves behind (present: the fixture is reused from a kept --work folder)
FIXTURE_FILES = {"scene": "scene/transforms_test.json", "plain": "plain/point_cloud.ply",
                 "field": "field/point_cloud.ply", "kitti": "kitti/ImageSets/val.txt", "detector": "det.pt",
                 "vqgraph": "vq/student.pt", "mirage": "sol.mirage.pt"}
CATEGORIES = ("bad values", "missing/corrupt files", "crafted payloads", "devices/backends", "concurrency",
              "resume mismatch", "divergence")

# The wrapper of API cases: an expected error type becomes one line and exit 2 (as the console does),
# anything else escapes as a traceback.
API_WRAPPER = """
import sys
def _case():
{body}
try:
    _case()
except AssertionError as _err:  # the case found a wrong result: exit 3, classified silent / data_lost
    print(f"api: wrong: {{_err}}", file=sys.stderr)
    sys.exit(3)
except (ValueError, FileNotFoundError, KeyError, TypeError) as _err:
    print(f"api: error: {{type(_err).__name__}}: {{_err}}".splitlines()[0], file=sys.stderr)
    sys.exit(2)
"""


@dataclasses.dataclass
class Case:
    category: str
    name: str
    argv: list[str] | None = None  # a command line (first item: distill3d | graphdistill | python)
    api: str | None = None  # or a Python body run under API_WRAPPER (``W`` is the work folder)
    needs: tuple[str, ...] = ()  # fixtures it reads
    marker: str | None = None  # payload marker file name (crafted cases)
    keep: str | None = None  # a file (relative to W) that must be unchanged afterwards
    concurrent: int = 1  # run this many copies at once (concurrency cases): exactly one may succeed
    timeout: float = 90.0
    expect_ok: bool = False  # a control that must succeed (API cases asserting a right result)
    before: Callable[[pathlib.Path], None] | None = None  # prepares the case's inputs


# --------------------------------------------------------------------------------------------- fixtures
def run(argv: list[str], work: pathlib.Path, timeout: float = 300.0) -> subprocess.CompletedProcess:
    exe = {"distill3d": str(BIN / "distill3d"), "graphdistill": str(BIN / "graphdistill"), "python": PYTHON}
    cmd = [exe.get(argv[0], argv[0])] + [a.replace("{W}", str(work)) for a in argv[1:]]
    env = dict(os.environ, PYTHONWARNINGS="ignore", TQDM_DISABLE="1", DISTILLKIT_CACHE=str(work / "cache"),
               DISTILLKIT_DEBUG="0")
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)


def small_scene(src: pathlib.Path, dst: pathlib.Path, train: int = 3, test: int = 2, name: str | None = None) -> pathlib.Path:
    """A copy of a Blender scene keeping the first views of each split (images, masks and all)."""
    dst.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("test", test)):
        meta = json.loads((src / f"transforms_{split}.json").read_text())
        meta["frames"] = meta["frames"][:count]
        (dst / f"transforms_{split}.json").write_text(json.dumps(meta))
        for frame in meta["frames"]:
            for key, value in frame.items():
                if key.endswith("file_path"):
                    for f in (src / value).parent.glob(pathlib.Path(value).name + "*"):
                        target = dst / f.relative_to(src)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(f, target)
    for extra in ("scene.json", "environment.npz"):
        if (src / extra).is_file():
            shutil.copy2(src / extra, dst / extra)
    return dst


def crafted_pt(path: pathlib.Path, marker: pathlib.Path) -> pathlib.Path:
    """A torch file whose unpickling (weights_only=False) writes ``marker``."""
    import torch

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('pwned')",))

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": Payload(), "model": Payload(), "config": Payload()}, path)
    return path


def build_fixtures(work: pathlib.Path, log) -> dict[str, str | None]:
    """Builds every fixture; returns name -> None (built) or the reason it failed."""
    status: dict[str, str | None] = {}

    def step(name: str, argv: list[str] | None = None, fn: Callable[[], None] | None = None, timeout: float = 400):
        started = time.perf_counter()
        if (work / FIXTURE_FILES[name]).exists():  # a kept --work folder: reuse what an earlier run built
            status[name] = None
            log(f"fixture {name}: reused")
            return
        try:
            if fn is not None:
                fn()
            if argv is not None:
                res = run(argv, work, timeout)
                if res.returncode != 0:
                    raise RuntimeError(f"exit {res.returncode}: {(res.stderr or res.stdout).strip().splitlines()[-1:]}")
            status[name] = None
        except Exception as err:  # noqa: BLE001 - a fixture failure marks its cases, it must not stop the probe
            status[name] = f"{type(err).__name__}: {err}"
        log(f"fixture {name}: {'ok' if status[name] is None else status[name]} ({time.perf_counter() - started:.1f} s)")

    step("scene", fn=lambda: small_scene(SCENE, work / "scene"))
    train_small = ["--steps", "3", "--init", "random", "--points", "300", "--eval-every", "0",
                   "--checkpoint-every", "0", "--backend", "torch"]
    step("plain", ["distill3d", "train", "{W}/scene", "--plain", "--out", "{W}/plain", *train_small])
    step("field", ["distill3d", "train", "{W}/scene", "--teacher", "efficientnet-lite0", "--out", "{W}/field",
                   "--cache", "{W}/cache", *train_small])
    step("kitti", ["distill3d", "points", "simulate", "--out", "{W}/kitti", "--train", "4", "--val", "2", "--overwrite"])
    step("detector", ["distill3d", "points", "train", "--data", "{W}/kitti", "--steps", "1", "--batch-size", "2",
                      "--width", "0.25", "--out", "{W}/det.pt"])
    (work / "vq.json").write_text(json.dumps({"teacher_train": {"epochs": 2, "patience": 2},
                                              "student_train": {"epochs": 2, "patience": 2},
                                              "teacher": {"hidden_dim": 16, "codebook_size": 16, "code_dim": 8},
                                              "student": {"hidden_dim": 16}}))
    step("vqgraph", ["graphdistill", "vqgraph", "train", "--dataset", "digits", "--config", "{W}/vq.json",
                     "--students", "mlp", "--out", "{W}/vq", "--no-progress"])
    step("mirage", ["graphdistill", "mirage", "distill", "solubility", "--support", "0.3", "--out", "{W}/sol.mirage.pt"])
    return status


# --------------------------------------------------------------------------------------------- catalogue
def _write(path: pathlib.Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def _truncate(src: pathlib.Path, dst: pathlib.Path, fraction: float = 0.5) -> None:
    data = src.read_bytes()
    _write(dst, data[: int(len(data) * fraction)])


def _scene_variant(work: pathlib.Path, name: str, edit: Callable[[pathlib.Path], None]) -> None:
    target = work / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(work / "scene", target)
    edit(target)


def _edit_json(path: pathlib.Path, fn: Callable[[dict], None]) -> None:
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


def _colmap_scene(work: pathlib.Path, name: str, images_txt: str, cameras_txt: str | None = None) -> None:
    """A minimal COLMAP text scene (two 8x8 images) with the given images.txt."""
    import numpy as np
    from PIL import Image

    root = work / name
    (root / "sparse" / "0").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 100 * i, np.uint8)).save(root / "images" / f"{i}.png")
    _write(root / "secret.png", (root / "images" / "0.png").read_bytes())
    _write(root / "sparse" / "0" / "cameras.txt", cameras_txt or "1 PINHOLE 8 8 10 10 4 4\n")
    _write(root / "sparse" / "0" / "images.txt", images_txt)
    _write(root / "sparse" / "0" / "points3D.txt", "1 0 0 0 255 255 255 0.5\n")


def catalogue() -> list[Case]:
    cases: list[Case] = []

    def add(category, name, argv=None, **kw):
        cases.append(Case(category, name, argv=argv, **kw))

    bad = "bad values"
    train = ["distill3d", "train", "{W}/scene", "--plain", "--out", "{W}/bad_train", "--steps", "3", "--backend", "torch",
             "--init", "random", "--points", "300"]
    for flag, value in [("--feature-weight", "-1"), ("--lambda-dssim", "2"), ("--lambda-dssim", "nan"), ("--steps", "0"),
                        ("--steps", "-5"), ("--sh-degree", "7"), ("--sh-degree-interval", "0"), ("--eval-every", "-1"),
                        ("--checkpoint-every", "-1"), ("--points", "0"), ("--decoder-dim", "0"), ("--seed", "-1")]:
        add(bad, f"train {flag} {value}", train + [flag, value], needs=("scene",))
    add(bad, "train --feature-weight -1 with a teacher",
        ["distill3d", "train", "{W}/scene", "--out", "{W}/bad_fw", "--feature-weight", "-1", "--cache", "{W}/cache",
         "--steps", "2"], needs=("scene",))
    render = ["distill3d", "render", "{W}/field/point_cloud.ply", "--scene", "{W}/scene", "--backend", "torch"]
    add(bad, "render --fps 0", render + ["--video", "{W}/v.gif", "--frames", "2", "--fps", "0"], needs=("field",))
    add(bad, "render --frames 0", render + ["--video", "{W}/v0.gif", "--frames", "0"], needs=("field",))
    add(bad, "render --frames -3", render + ["--video", "{W}/v1.gif", "--frames", "-3"], needs=("field",))
    seg = ["distill3d", "query", "segment", "{W}/field/point_cloud.ply", "--scene", "{W}/scene", "--backend", "torch",
           "--out", "{W}/mask.png", "--point", "10", "10"]
    for t in ("5", "-2", "nan", "inf"):
        add(bad, f"query segment --threshold {t}", seg + ["--threshold", t], needs=("field",))
    add(bad, "query edit --threshold 5", ["distill3d", "query", "edit", "{W}/field/point_cloud.ply", "--scene",
                                          "{W}/scene", "--backend", "torch", "--action", "delete", "--point", "1", "1",
                                          "--threshold", "5", "--out", "{W}/edited.ply"], needs=("field",))
    add(bad, "query segment --point outside the image", seg[:-2] + ["--point", "9999", "9999"], needs=("field",))
    add(bad, "query segment --view 99", seg + ["--view", "99"], needs=("field",))
    add(bad, "query miou --reference-stride 0", ["distill3d", "query", "miou", "{W}/field/point_cloud.ply", "--scene",
                                                 "{W}/scene", "--backend", "torch", "--reference-stride", "0"],
        needs=("field",))
    add(bad, "query miou on a field without features", ["distill3d", "query", "miou", "{W}/plain/point_cloud.ply",
                                                        "--scene", "{W}/scene", "--backend", "torch"], needs=("plain",))
    ev = ["distill3d", "points", "eval", "--data", "{W}/kitti", "--split", "val", "--checkpoint", "{W}/det.pt"]
    for iou in ("-1", "1.5", "0", "nan"):
        add(bad, f"points eval --iou {iou}", ev + ["--iou", iou, iou, iou], needs=("detector",))
    ptrain = ["distill3d", "points", "train", "--data", "{W}/kitti", "--width", "0.25"]
    for flag, value in [("--steps", "0"), ("--batch-size", "0"), ("--lr", "-1"), ("--width", "0"), ("--lr", "nan")]:
        add(bad, f"points train {flag} {value}", ptrain + [flag, value, "--out", f"{{W}}/bad_{flag[2:]}_{value}.pt"],
            needs=("kitti",))
    add(bad, "points simulate --train -1", ["distill3d", "points", "simulate", "--out", "{W}/sim_bad", "--train", "-1",
                                            "--val", "0"])
    vq = ["graphdistill", "vqgraph", "train", "--dataset", "digits", "--config", "{W}/vq.json", "--students", "mlp",
          "--no-progress"]
    for flag, value in [("--code-dim", "0"), ("--codebook-size", "0"), ("--codebook-size", "-3")]:
        add(bad, f"vqgraph train {flag} {value}", vq + [flag, value, "--out", f"{{W}}/vq_bad{flag}{value}"],
            needs=("vqgraph",))
    for key, section, value in [("epochs", "teacher_train", 0), ("lr", "student_train", -1.0),
                                ("dropout", "teacher", 1.5), ("temperature", "distill", 0.0)]:
        name = f"vq_{section}_{key}.json"
        add(bad, f"vqgraph --config {section}.{key}={value}",
            ["graphdistill", "vqgraph", "train", "--dataset", "digits", "--config", f"{{W}}/{name}", "--students", "mlp",
             "--no-progress", "--out", f"{{W}}/vq_{name}"],
            before=lambda w, n=name, s=section, k=key, v=value: _write(w / n, json.dumps({s: {k: v}})))
    mt = ["graphdistill", "mirage", "train", "{W}/sol.mirage.pt", "--epochs", "1", "--samples-per-epoch", "32"]
    for flag, value in [("--hidden", "0"), ("--layers", "0"), ("--epochs", "0"), ("--lr", "-1"), ("--batch-size", "0")]:
        add(bad, f"mirage train {flag} {value}", mt + [flag, value], needs=("mirage",))
    md = ["graphdistill", "mirage", "distill", "solubility", "--out", "{W}/sol_bad.mirage.pt"]
    for flag, value in [("--depth", "0"), ("--num-bins", "0"), ("--support", "1.5"), ("--support", "-0.1")]:
        add(bad, f"mirage distill {flag} {value}", md + [flag, value])
    inv = ["distill3d", "inverse", "train", "{W}/scene", "--out", "{W}/bad_prd", "--backend", "torch", "--quiet"]
    add(bad, "inverse train --downsample 0", inv + ["--downsample", "0"], needs=("scene",))
    add(bad, "inverse train --radiance-steps -1", inv + ["--radiance-steps", "-1"], needs=("scene",))
    add(bad, "inverse train --stage-steps -1 -1 -1", inv + ["--stage-steps", "-1", "-1", "-1"], needs=("scene",))
    build = ["distill3d", "scenes", "build", "default", "--out", "{W}/built", "--quiet"]
    add(bad, "scenes build --resolution 0 0", build + ["--resolution", "0", "0"])
    add(bad, "scenes build --spp 0", build + ["--spp", "0"])
    add(bad, "scenes build --num-train -1", build + ["--num-train", "-1"])
    add(bad, "predict --batch-size 0", ["graphdistill", "predict", "--student", "{W}/vq/student.pt", "--features",
                                        "{W}/feat.npy", "--batch-size", "0"], needs=("vqgraph",),
        before=lambda w: __import__("numpy").save(w / "feat.npy", __import__("numpy").zeros((4, 64), "float32")))
    add(bad, "render size guard (20000 x 20000 rasterize)", api="""
    import torch
    from distill3d.render import rasterize
    K = torch.tensor([[1e4, 0, 1e4], [0, 1e4, 1e4], [0, 0, 1.0]])[None]
    rasterize(torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.1), torch.ones(1),
              torch.ones(1, 3), torch.eye(4)[None], K, 20000, 20000, backend="torch")""")
    add(bad, "rasterize an all-zero viewmat", api="""
    import torch
    from distill3d.render import rasterize
    out = rasterize(torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.1), torch.ones(1),
                    torch.ones(1, 3), torch.zeros(1, 4, 4), torch.eye(3)[None], 8, 8, backend="torch")""")
    add(bad, "train on a scene with an all-zero transform_matrix", ["distill3d", "train", "{W}/zero_pose", "--plain",
                                                                    "--steps", "2", "--out", "{W}/zp"], needs=("scene",),
        before=lambda w: _scene_variant(w, "zero_pose", lambda d: _edit_json(
            d / "transforms_train.json", lambda m: m["frames"][0].update(transform_matrix=[[0.0] * 4] * 4))))
    add(bad, "Blender scene with camera_angle_x 0", ["distill3d", "train", "{W}/zero_fov", "--plain", "--steps", "2",
                                                     "--out", "{W}/zf"], needs=("scene",),
        before=lambda w: _scene_variant(w, "zero_fov", lambda d: _edit_json(
            d / "transforms_train.json", lambda m: (m.pop("fl_x", None), m.pop("fl_y", None),
                                                    m.update(camera_angle_x=0.0)))))

    miss = "missing/corrupt files"
    add(miss, "train a missing scene", ["distill3d", "train", "{W}/nope", "--plain", "--out", "{W}/m1"])
    add(miss, "train a scene with a truncated PNG", ["distill3d", "train", "{W}/trunc_png", "--plain", "--steps", "2",
                                                     "--out", "{W}/m2"], needs=("scene",),
        before=lambda w: _scene_variant(w, "trunc_png", lambda d: [_truncate(p, p) for p in sorted((d / "train").glob("*.png"))[:1]]))
    add(miss, "train a scene with a garbage PNG", ["distill3d", "train", "{W}/junk_png", "--plain", "--steps", "2",
                                                   "--out", "{W}/m3"], needs=("scene",),
        before=lambda w: _scene_variant(w, "junk_png", lambda d: [_write(p, os.urandom(300)) for p in sorted((d / "train").glob("*.png"))[:1]]))
    add(miss, "train a scene with a corrupt transforms json", ["distill3d", "train", "{W}/junk_json", "--plain",
                                                               "--out", "{W}/m4"], needs=("scene",),
        before=lambda w: _scene_variant(w, "junk_json", lambda d: _write(d / "transforms_train.json", "{\"frames\": [")))
    add(miss, "render a missing PLY", ["distill3d", "render", "{W}/nope.ply", "--scene", "{W}/scene"], needs=("scene",))
    add(miss, "render a garbage PLY", ["distill3d", "render", "{W}/junk.ply", "--scene", "{W}/scene"], needs=("scene",),
        before=lambda w: _write(w / "junk.ply", os.urandom(2000)))
    add(miss, "render a truncated PLY", ["distill3d", "render", "{W}/trunc.ply", "--scene", "{W}/scene",
                                         "--backend", "torch"], needs=("field",),
        before=lambda w: _truncate(w / "field" / "point_cloud.ply", w / "trunc.ply"))
    add(miss, "query segment a truncated PLY", ["distill3d", "query", "segment", "{W}/trunc2.ply", "--scene",
                                                "{W}/scene", "--point", "1", "1", "--out", "{W}/m.png"], needs=("field",),
        before=lambda w: _truncate(w / "field" / "point_cloud.ply", w / "trunc2.ply", 0.8))
    add(miss, "points eval a garbage checkpoint", ev[:-1] + ["{W}/junk.pt"], needs=("detector",),
        before=lambda w: _write(w / "junk.pt", os.urandom(1000)))
    add(miss, "points eval a truncated checkpoint", ev[:-1] + ["{W}/trunc.pt"], needs=("detector",),
        before=lambda w: _truncate(w / "det.pt", w / "trunc.pt"))
    add(miss, "points eval without calib files", ["distill3d", "points", "eval", "--data", "{W}/kitti_nocalib",
                                                  "--split", "val", "--checkpoint", "{W}/det.pt"], needs=("detector",),
        before=lambda w: (shutil.rmtree(w / "kitti_nocalib", ignore_errors=True),
                          shutil.copytree(w / "kitti", w / "kitti_nocalib"),
                          shutil.rmtree(w / "kitti_nocalib" / "training" / "calib")))
    add(miss, "points eval without label files", ["distill3d", "points", "eval", "--data", "{W}/kitti_nolabel",
                                                  "--split", "val", "--checkpoint", "{W}/det.pt"], needs=("detector",),
        before=lambda w: (shutil.rmtree(w / "kitti_nolabel", ignore_errors=True),
                          shutil.copytree(w / "kitti", w / "kitti_nolabel"),
                          shutil.rmtree(w / "kitti_nolabel" / "training" / "label_2")))
    add(miss, "points eval a missing data folder", ev[:2] + ["eval", "--data", "{W}/nope", "--checkpoint", "{W}/det.pt"],
        needs=("detector",))
    add(miss, "points eval a truncated velodyne scan", ["distill3d", "points", "eval", "--data", "{W}/kitti_trunc",
                                                        "--split", "val", "--checkpoint", "{W}/det.pt"],
        needs=("detector",),
        before=lambda w: (shutil.rmtree(w / "kitti_trunc", ignore_errors=True),
                          shutil.copytree(w / "kitti", w / "kitti_trunc"),
                          [_write(p, p.read_bytes()[:-6]) for p in sorted((w / "kitti_trunc" / "training" / "velodyne").glob("val_*.bin"))[:1]]))
    add(miss, "predict with a garbage student", ["graphdistill", "predict", "--student", "{W}/junk.pt", "--features",
                                                 "{W}/feat.npy"],
        before=lambda w: (_write(w / "junk.pt", os.urandom(1000)),
                          __import__("numpy").save(w / "feat.npy", __import__("numpy").zeros((4, 64), "float32"))))
    add(miss, "predict with missing features", ["graphdistill", "predict", "--student", "{W}/vq/student.pt",
                                                "--features", "{W}/nope.npy"], needs=("vqgraph",))
    add(miss, "mirage train a garbage distilled file", ["graphdistill", "mirage", "train", "{W}/junk.pt"],
        before=lambda w: _write(w / "junk.pt", os.urandom(1000)))
    add(miss, "mirage train a truncated distilled file", ["graphdistill", "mirage", "train", "{W}/trunc.mirage.pt"],
        needs=("mirage",), before=lambda w: _truncate(w / "sol.mirage.pt", w / "trunc.mirage.pt"))
    add(miss, "inverse relight a missing --env", ["distill3d", "inverse", "relight", "{W}/nope_run", "--env",
                                                  "{W}/nope.npz"])
    add(miss, "teachers pca of a garbage PNG", ["distill3d", "teachers", "pca", "{W}/junk.png", "--out", "{W}/p.png"],
        before=lambda w: _write(w / "junk.png", b"\x89PNG\r\n\x1a\n" + os.urandom(200)))
    add(miss, "train --resume from a garbage checkpoint", ["distill3d", "train", "{W}/scene", "--plain", "--steps", "4",
                                                           "--out", "{W}/junk_ckpt", "--resume", "--backend", "torch"],
        needs=("scene",), before=lambda w: _write(w / "junk_ckpt" / "checkpoint.pt", os.urandom(500)))
    add(miss, "COLMAP images.txt with a short line", ["distill3d", "train", "{W}/colmap_short", "--plain", "--out",
                                                      "{W}/c1"],
        before=lambda w: _colmap_scene(w, "colmap_short", "1 1 0 0 0 0 0 4 1 0.png\n\n2 1 0 0\n\n"))
    add(miss, "COLMAP cameras.txt with a short line", ["distill3d", "train", "{W}/colmap_cam", "--plain", "--out",
                                                       "{W}/c2"],
        before=lambda w: _colmap_scene(w, "colmap_cam", "1 1 0 0 0 0 0 4 1 0.png\n\n2 1 0 0 0 0 0 4 1 1.png\n\n",
                                       "1 PINHOLE 8\n"))
    add(miss, "COLMAP image name escaping images/", ["distill3d", "train", "{W}/colmap_escape", "--plain", "--out",
                                                     "{W}/c3"],
        before=lambda w: _colmap_scene(w, "colmap_escape",
                                       "1 1 0 0 0 0 0 4 1 0.png\n\n2 1 0 0 0 0 0 4 1 ../secret.png\n\n"))
    add(miss, "COLMAP image with a zero quaternion", ["distill3d", "train", "{W}/colmap_q0", "--plain", "--out",
                                                      "{W}/c4"],
        before=lambda w: _colmap_scene(w, "colmap_q0", "1 0 0 0 0 0 0 4 1 0.png\n\n2 1 0 0 0 0 0 4 1 1.png\n\n"))

    crafted = "crafted payloads"

    def craft(relative: str, marker: str):
        return lambda w: crafted_pt(w / relative, w / marker)

    add(crafted, "train --resume with a crafted checkpoint.pt", ["distill3d", "train", "{W}/scene", "--plain",
                                                                 "--steps", "4", "--out", "{W}/cr1", "--resume",
                                                                 "--backend", "torch"],
        needs=("scene",), marker="PAYLOAD_1", before=craft("cr1/checkpoint.pt", "PAYLOAD_1"))
    add(crafted, "render with a crafted .decoder.pt beside the PLY", ["distill3d", "render", "{W}/cr2/point_cloud.ply",
                                                                      "--scene", "{W}/scene", "--backend", "torch",
                                                                      "--out", "{W}/cr2/r"],
        needs=("field",), marker="PAYLOAD_2",
        before=lambda w: (shutil.copytree(w / "field", w / "cr2", dirs_exist_ok=True),
                          crafted_pt(w / "cr2" / "point_cloud.decoder.pt", w / "PAYLOAD_2")))
    add(crafted, "query segment with a crafted .decoder.pt", ["distill3d", "query", "segment",
                                                              "{W}/cr3/point_cloud.ply", "--scene", "{W}/scene",
                                                              "--point", "1", "1", "--out", "{W}/cr3/m.png",
                                                              "--backend", "torch"],
        needs=("field",), marker="PAYLOAD_3",
        before=lambda w: (shutil.copytree(w / "field", w / "cr3", dirs_exist_ok=True),
                          crafted_pt(w / "cr3" / "point_cloud.decoder.pt", w / "PAYLOAD_3")))
    add(crafted, "points eval a crafted checkpoint", ev[:-1] + ["{W}/cr4.pt"], needs=("kitti",), marker="PAYLOAD_4",
        before=craft("cr4.pt", "PAYLOAD_4"))
    add(crafted, "points distill from a crafted teacher", ["distill3d", "points", "distill", "--data", "{W}/kitti",
                                                           "--teacher", "{W}/cr5.pt", "--steps", "1", "--out",
                                                           "{W}/cr5_student.pt"],
        needs=("kitti",), marker="PAYLOAD_5", before=craft("cr5.pt", "PAYLOAD_5"))
    add(crafted, "points train resuming a crafted --out", ptrain + ["--steps", "2", "--out", "{W}/cr6.pt", "--resume"],
        needs=("kitti",), marker="PAYLOAD_6", before=craft("cr6.pt", "PAYLOAD_6"))
    add(crafted, "predict with a crafted student", ["graphdistill", "predict", "--student", "{W}/cr7.pt", "--features",
                                                    "{W}/feat7.npy"], marker="PAYLOAD_7",
        before=lambda w: (crafted_pt(w / "cr7.pt", w / "PAYLOAD_7"),
                          __import__("numpy").save(w / "feat7.npy", __import__("numpy").zeros((4, 64), "float32"))))
    add(crafted, "vqgraph export a crafted student", ["graphdistill", "vqgraph", "export", "--student", "{W}/cr8.pt",
                                                      "--out", "{W}/cr8.ts"], marker="PAYLOAD_8", before=craft("cr8.pt", "PAYLOAD_8"))
    add(crafted, "vqgraph train auto-resuming a crafted teacher.ckpt", vq + ["--out", "{W}/cr9"], needs=("vqgraph",),
        marker="PAYLOAD_9", before=lambda w: [crafted_pt(w / "cr9" / "checkpoints" / n, w / "PAYLOAD_9")
                                       for n in ("teacher.ckpt", "teacher.pt", "transductive_teacher.ckpt")])
    add(crafted, "mirage train a crafted distilled file", ["graphdistill", "mirage", "train", "{W}/cr10.mirage.pt"],
        marker="PAYLOAD_10", before=craft("cr10.mirage.pt", "PAYLOAD_10"))
    add(crafted, "inverse relight a crafted run checkpoint", ["distill3d", "inverse", "relight", "{W}/cr11", "--env",
                                                              "{W}/scene/environment.npz"],
        needs=("scene",), marker="PAYLOAD_11", before=craft("cr11/checkpoint.pt", "PAYLOAD_11"))
    add(crafted, "inverse train over a crafted radiance checkpoint", inv[:3] + ["{W}/scene", "--out", "{W}/cr12",
                                                                               "--radiance-steps", "2", "--stage-steps",
                                                                               "1", "1", "1", "--quiet", "--resume"],
        needs=("scene",), marker="PAYLOAD_12", before=craft("cr12/radiance/checkpoint.pt", "PAYLOAD_12"),
        expect_ok=True)  # refusing the file or never reading it are both right: only the payload counts
    add(crafted, "inverse relight with an object-array --env .npz", ["distill3d", "inverse", "relight", "{W}/cr13",
                                                                     "--env", "{W}/cr13.npz"],
        marker="PAYLOAD_13", before=lambda w: _crafted_npz(w / "cr13.npz", w / "PAYLOAD_13"))

    dev = "devices/backends"
    add(dev, "train --device cuda", train[:-6] + ["--device", "cuda", "--out", "{W}/d1"], needs=("scene",))
    add(dev, "train --device cuda:7", train[:-6] + ["--device", "cuda:7", "--out", "{W}/d2"], needs=("scene",))
    add(dev, "train --device tpu", train[:-6] + ["--device", "tpu", "--out", "{W}/d3"], needs=("scene",))
    add(dev, "train --backend gsplat", ["distill3d", "train", "{W}/scene", "--plain", "--steps", "2", "--backend",
                                       "gsplat", "--out", "{W}/d4"], needs=("scene",))
    add(dev, "render --backend gsplat", render[:-2] + ["--backend", "gsplat", "--out", "{W}/d5"], needs=("field",))
    add(dev, "query segment --backend gsplat", seg[:6] + ["--backend", "gsplat", "--out", "{W}/d6.png", "--point",
                                                          "1", "1"], needs=("field",))
    add(dev, "inverse train --backend gsplat", inv[:5] + ["--backend", "gsplat", "--quiet"], needs=("scene",))
    add(dev, "query segment --text with a non-text teacher", seg[:-2] + ["--text", "a chair", "--teacher",
                                                                         "efficientnet-lite0"], needs=("field",))
    add(dev, "query segment --text with clip and no checkpoint", seg[:-2] + ["--text", "a chair"], needs=("field",))
    add(dev, "rasterize(backend='gsplat') on CPU tensors", api="""
    import torch
    from distill3d.render import rasterize
    rasterize(torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.1), torch.ones(1),
              torch.ones(1, 3), torch.eye(4)[None], torch.eye(3)[None] * 8, 8, 8, backend="gsplat")""")

    conc = "concurrency"
    add(conc, "two `train` into one --out", ["distill3d", "train", "{W}/scene", "--plain", "--steps", "3", "--out",
                                             "{W}/conc1", "--backend", "torch", "--init", "random", "--points", "300"],
        needs=("scene",), concurrent=2, timeout=180)
    add(conc, "two `points train` into one --out", ptrain + ["--steps", "2", "--batch-size", "2", "--out",
                                                             "{W}/conc2.pt"], needs=("kitti",), concurrent=2, timeout=180)
    add(conc, "two `vqgraph train` into one --out", vq + ["--out", "{W}/conc3"], needs=("vqgraph",), concurrent=2,
        timeout=180)

    res = "resume mismatch"
    add(res, "--resume another scene's checkpoint (same folder name)", ["distill3d", "train", "{W}/other/scene",
                                                                        "--plain", "--steps", "5", "--out",
                                                                        "{W}/plain", "--resume", "--backend", "torch",
                                                                        "--init", "random", "--points", "300"],
        needs=("plain",), keep="plain/checkpoint.pt",
        before=lambda w: small_scene(SCENE.parent / "glossy", w / "other" / "scene"))
    add(res, "train into an existing run without --resume", ["distill3d", "train", "{W}/scene", "--plain", "--steps",
                                                             "2", "--out", "{W}/plain", "--backend", "torch",
                                                             "--init", "random", "--points", "300"],
        needs=("plain",), keep="plain/checkpoint.pt")
    add(res, "--resume --steps below the checkpoint's step", ["distill3d", "train", "{W}/scene", "--plain", "--steps",
                                                              "1", "--out", "{W}/plain", "--resume", "--backend",
                                                              "torch", "--init", "random", "--points", "300"],
        needs=("plain",), keep="plain/checkpoint.pt")
    add(res, "query edit writing over its own input", ["distill3d", "query", "edit", "{W}/field/point_cloud.ply",
                                                       "--scene", "{W}/scene", "--backend", "torch", "--action",
                                                       "delete", "--point", "1", "1", "--out",
                                                       "{W}/field/point_cloud.ply"],
        needs=("field",), keep="field/point_cloud.ply")
    add(res, "points train --resume with other settings", ptrain + ["--steps", "3", "--lr", "0.1", "--out", "{W}/det.pt",
                                                                    "--resume"], needs=("detector",), keep="det.pt")

    div = "divergence"
    add(div, "Feature 3DGS with learning rates x1e4 (API)", api="""
    import pathlib, hashlib
    from distill3d.data import load_scene
    from distill3d.fields.config import InitConfig, TrainConfig
    from distill3d.fields.trainer import Trainer
    W = pathlib.Path({W!r})
    cfg = TrainConfig(steps=60, checkpoint_every=3, eval_every=0, backend="torch",
                      init=InitConfig(method="random", num_points=300))
    trainer = Trainer(load_scene(W / "scene", "train"), cfg, W / "div1")
    trainer.train(progress=False, until=3)
    saved = hashlib.sha256((W / "div1" / "checkpoint.pt").read_bytes()).hexdigest()
    for group in trainer.optimizers.values():
        group.param_groups[0]["lr"] *= 1e4
    trainer.config.optim.scales_lr *= 1e4
    try:
        trainer.train(progress=False)
    finally:
        assert hashlib.sha256((W / "div1" / "checkpoint.pt").read_bytes()).hexdigest() == saved, "data lost: checkpoint overwritten"
    """, needs=("scene",), timeout=180)
    add(div, "points train --lr 1e6", ptrain + ["--steps", "30", "--batch-size", "2", "--lr", "1e6", "--out",
                                                "{W}/div2.pt"], needs=("kitti",), timeout=180)
    add(div, "mirage train --lr 1e9", mt[:3] + ["--epochs", "3", "--samples-per-epoch", "64", "--lr", "1e9"],
        needs=("mirage",), timeout=180)
    add(div, "rasterize scales 1e8: native and torch agree", api="""
    import torch
    from distill3d.render import rasterize
    from distill3d.render.rasterize import available_backends
    args = (torch.tensor([[0.0, 0, 3], [0.2, 0, 3]]), torch.tensor([[1.0, 0, 0, 0], [0.9, 0.1, 0.2, 0.3]]),
            torch.tensor([[1e8, 1e8, 1e8], [0.1, 0.1, 0.1]]), torch.tensor([0.5, 0.9]), torch.rand(2, 3),
            torch.eye(4)[None], torch.tensor([[[20.0, 0, 16], [0, 20, 16], [0, 0, 1]]]), 32, 32)
    images = {{}}
    for backend in ("torch", "native"):
        if backend in available_backends("cpu"):
            images[backend] = rasterize(*args, backend=backend)[0]
    assert all(torch.isfinite(v).all() for v in images.values()), "non-finite image"
    if len(images) == 2:
        assert torch.allclose(images["torch"], images["native"], atol=1e-4), "native and torch differ"
    print("api: returned normally", sorted(images))
    """, expect_ok=True)
    add(div, "all-black images: metrics.json holds no Infinity/NaN", api="""
    import json, pathlib, numpy as np
    from PIL import Image
    W = pathlib.Path({W!r})
    import subprocess, sys, shutil
    scene = W / "black"
    if scene.exists():
        shutil.rmtree(scene)
    shutil.copytree(W / "scene", scene)
    for p in list(scene.rglob("*.png")):
        im = np.asarray(Image.open(p))
        Image.fromarray(np.zeros_like(im)).save(p)
    r = subprocess.run([{distill3d!r}, "train", str(scene), "--plain", "--steps", "2", "--out", str(W / "black_run"),
                        "--backend", "torch", "--init", "random", "--points", "50"], capture_output=True, text=True)
    text = (W / "black_run" / "metrics.json").read_text() if (W / "black_run" / "metrics.json").is_file() else ""
    if r.returncode != 0:
        raise ValueError(r.stderr.strip().splitlines()[-1])
    assert "Infinity" not in text and "NaN" not in text, "non-standard JSON: " + text[:200]
    print("api: returned normally")
    """, needs=("scene",), expect_ok=True, timeout=180)
    return cases


def _crafted_npz(path: pathlib.Path, marker: pathlib.Path) -> None:
    import numpy as np

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('pwned')",))

    np.savez(path, env=np.array([Payload()], dtype=object))


# --------------------------------------------------------------------------------------------- running
def _digest(path: pathlib.Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _classify(rc: int | None, stderr: str, expect_ok: bool) -> str:
    if rc is None:
        return "hang"
    if rc == 3 and "api: wrong:" in stderr:
        return "data_lost" if "api: wrong: data lost" in stderr else "silent"
    if "Traceback (most recent call last)" in stderr:
        return "traceback"
    if rc == 0:
        return "clear" if expect_ok else "silent"
    # the error line, ignoring progress bars that a dying process may flush after it
    lines = [line for line in stderr.strip().splitlines() if line.strip() and "it/s]" not in line]
    if rc == 2 and lines and ": error:" in lines[-1]:
        return "clear"
    return "other"


def run_case(case: Case, work: pathlib.Path, fixtures: dict[str, str | None]) -> dict:
    record = {"category": case.category, "case": case.name}
    broken = [f"{n}: {fixtures.get(n)}" for n in case.needs if fixtures.get(n) is not None]
    if broken:
        return {**record, "outcome": "other", "detail": f"fixture failed: {broken[0]}"[:300], "seconds": 0.0}
    started = time.perf_counter()
    try:
        if case.before is not None:
            case.before(work)
    except Exception as err:  # noqa: BLE001
        return {**record, "outcome": "other", "detail": f"case set-up failed: {type(err).__name__}: {err}"[:300],
                "seconds": 0.0}
    keep_digest = _digest(work / case.keep) if case.keep else None
    if case.api is not None:
        body = textwrap.indent(textwrap.dedent(case.api.format(W=str(work), distill3d=str(BIN / "distill3d"))), "    ")
        argv = ["python", "-c", API_WRAPPER.format(body=body)]
    else:
        argv = case.argv
    outcomes, details = [], []
    procs = []
    exe = {"distill3d": str(BIN / "distill3d"), "graphdistill": str(BIN / "graphdistill"), "python": PYTHON}
    cmd = [exe.get(argv[0], argv[0])] + [a.replace("{W}", str(work)) for a in argv[1:]]
    env = dict(os.environ, PYTHONWARNINGS="ignore", TQDM_DISABLE="1")
    env.pop("DISTILLKIT_DEBUG", None)
    for _ in range(case.concurrent):
        procs.append(subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=max(1.0, case.timeout - (time.perf_counter() - started)))
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            rc = None
        outcomes.append(_classify(rc, err, case.expect_ok))
        lines = [line for line in (err or "").strip().splitlines() if line.strip()]
        details.append(f"rc={rc}: {lines[-1] if lines else (out or '').strip()[-200:]}")
    if case.concurrent > 1:
        # exactly one run may finish (exit 0, classified "silent" above); the others must stop with a clear error
        finished = outcomes.count("silent")
        failed = [o for o in outcomes if o != "silent"]
        worst = [o for o in ("hang", "payload", "traceback", "other") if o in failed]
        if worst:
            outcome = worst[0]
        elif finished == 1:
            outcome = "clear"
        else:  # several runs finished into one folder (one's files silently kept), or none did
            outcome = "silent" if finished > 1 else "other"
    else:
        outcome = outcomes[0]
    if case.marker and (work / case.marker).is_file() and (work / case.marker).read_text() == "pwned":
        outcome = "payload"
    elif case.keep and _digest(work / case.keep) != keep_digest:
        outcome = "data_lost"
    return {**record, "outcome": outcome, "detail": " | ".join(details)[:400],
            "seconds": round(time.perf_counter() - started, 2)}


def table(records: list[dict]) -> str:
    head = ("| category | cases | clear errors | tracebacks | silent wrong outputs | hangs | data lost | "
            "payloads executed | other |")
    rows = [head, "|" + "---|" * 9]
    totals = {o: 0 for o in OUTCOMES}
    for category in CATEGORIES + ("total",):
        mine = records if category == "total" else [r for r in records if r["category"] == category]
        if not mine:
            continue
        counts = {o: sum(r["outcome"] == o for r in mine) for o in OUTCOMES}
        if category != "total":
            for o in OUTCOMES:
                totals[o] += counts[o]
        name = f"**{category}**" if category == "total" else category
        rows.append(f"| {name} | {len(mine)} | " + " | ".join(str(counts[o]) for o in OUTCOMES) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="cases run in parallel (default 2)")
    parser.add_argument("--only", nargs="+", choices=CATEGORIES, default=None, help="run only these categories")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    parser.add_argument("--work", type=pathlib.Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="reliability_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    cases = [c for c in catalogue() if args.only is None or c.category in args.only]
    needed = {n for c in cases for n in c.needs}
    fixtures = build_fixtures(work, log) if needed else {}
    records: list[dict] = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(run_case, case, work, fixtures): case for case in cases}
        for future in concurrent.futures.as_completed(futures):
            record = future.result()
            records.append(record)
            log(f"[{len(records):3d}/{len(cases)}] {record['outcome']:9s} {record['category']}: {record['case']}"
                + ("" if record["outcome"] == "clear" else f"  ({record['detail'][:160]})"))
    order = {c.name: i for i, c in enumerate(cases)}
    records.sort(key=lambda r: order[r["case"]])
    print(table(records))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {o: sum(r["outcome"] == o for r in records) for o in OUTCOMES}
    args.out.write_text(json.dumps({"cases": len(records), "summary": summary, "fixtures": fixtures,
                                    "seconds": round(time.perf_counter() - started, 1), "records": records}, indent=1))
    log(f"{len(records)} cases in {time.perf_counter() - started:.0f} s -> {args.out}")
    if not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
