"""The native rasterizer backend: the C++/OpenMP (CPU) and CUDA kernels of ``csrc/`` behind torch.

The kernels compute exactly the stages of the torch reference (:mod:`distill3d.render.projection`,
:mod:`distill3d.render.tiles`, :mod:`distill3d.render.compositing`), with the same culling rules, tile
rule, sort keys and 3DGS cut-offs:

.. math::

    \\alpha_i = \\min(\\alpha_{max},\\ o_i e^{-\\sigma_i}), \\quad
    C(p) = \\sum_i \\alpha_i T_i c_i + T_{end}\\, b_g, \\quad A(p) = 1 - T_{end},

and the backward pass walks each pixel's list back to front from the stored final transmittance and
last-blended index, as 3DGS does. Only colour channels ``[0, geometry_channels)`` and the alpha output
send gradients to ``means2d`` / ``conics`` / ``opacities``; every channel trains its colours.

CPU layout: OpenMP threads take whole tiles; inside a tile the loop over the tile's Gaussians is the
outer one and every inner loop runs over a lane group (8 pixels of one tile row) as SIMD lanes
(channel-major accumulators), so exp, alpha and the colour multiply-adds vectorise for any run-time D.
Each Gaussian visits only the lane groups its ``alpha >= alpha_min`` ellipse reaches that still hold a
compositing pixel, so a splat of a few pixels costs a few groups, not the whole tile. The Gaussians of a
tile are gathered in batches of 32 from one packed 8-value record per Gaussian (position, conic,
opacity and ellipse extents, written once per call), the next batches prefetched: read in depth order
they are scattered over memory, and at 1M Gaussians those reads are most of the time. Gradients are
summed over a tile's pixels, then added per Gaussian in tile order (deterministic, see
:func:`deterministic_backward`) or with atomics.

The CPU projection takes blocks of one SIMD vector of Gaussians (8 floats or 4 doubles, one Gaussian a
lane, each lane rounding as the scalar code), CUDA one thread per Gaussian; either visits every camera,
so the backward sums camera contributions without atomics.

CPU tile binning fills per-tile buckets (count per chunk of Gaussians, prefix sums, fill in Gaussian order,
all parallel) and sorts each bucket by depth with a radix sort, so it scales with cores and needs no
global sort; the result equals the reference's stable global sort. ``rasterize`` validates its inputs
once and calls the ``*_unchecked`` stages, so no per-stage check scans the Gaussians again.

The extension is compiled on first use with ``torch.utils.cpp_extension.load`` (ninja) and cached in
torch's extension directory (``TORCH_EXTENSIONS_DIR``). The CPU build uses ``-march=native``; the
extension name carries a hash of the kernel sources, the build flags, the torch and Python versions and
the host's ISA flags (:func:`build_key`), so a cache shared between machines, checkouts or versions
never hands one a binary built for another, and none rebuilds over another's: a finished build (marked
by ``built.key``) is imported directly, from any checkout or venv. Builds are serialised by
a lock the kernel drops when its owner dies (:func:`build_lock`): a build killed half-way leaves no lock
that hangs later runs, and waiting on a live one ends after ``NativeBuildConfig.build_timeout_s`` with
an error. The CUDA build (kernels in ``csrc/cuda``) is made only where torch has CUDA and a GPU is visible.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

import torch
from torch import Tensor

from distillcore.checks import check_positive, check_tensor
from distill3d.render import compositing, projection
from distill3d.render.validation import check_cameras, check_geometry, check_planes

CSRC = Path(__file__).resolve().parents[1] / "csrc"  # package data: it ships inside the wheel
FLOAT_DTYPES = (torch.float32, torch.float64)
LOCK_POLL_S = 0.2  # how often a process waiting for another one's build looks again
BUILT_MARKER = "built.key"  # written into the build folder once the extension built and loaded

# warnings, so the first-build line and a cleared stale lock reach stderr with or without the CLI's logging
logger = logging.getLogger(f"distillkit.{__name__}")  # the hierarchy distillcore.config_cli prints


@dataclass(frozen=True)
class NativeBuildConfig:
    """Compiler flags of the native extension.

    ``-ffast-math`` is given at compile time only (never at link time, where GCC would add
    ``crtfastmath.o`` and switch the whole process to flush-denormals-to-zero); it lets the compiler
    call glibc's vectorised ``expf`` (libmvec) inside the SIMD pixel loops.
    """

    cxx_flags: tuple[str, ...] = ("-O3", "-march=native", "-ffast-math", "-fopenmp")
    ld_flags: tuple[str, ...] = ("-fopenmp", "-lmvec")
    cuda_flags: tuple[str, ...] = ("-O3", "--use_fast_math")
    verbose: bool = False
    # longest wait for another process's build of the same extension (a CPU build takes 30-60 s)
    build_timeout_s: float = 600.0

    def __post_init__(self):
        check_positive(self.build_timeout_s, "build_timeout_s")


class NativeBuildError(RuntimeError):
    """The native extension could not be compiled or loaded."""


_BUILD_ERRORS: dict[str, str] = {}


def _isa_tag() -> str:
    """A short hash of this CPU's model and instruction-set flags (part of the cached extension's name)."""
    flags = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(("flags", "model name", "Features")):
                    flags += line
                if line.strip() == "":
                    break  # the first processor's block describes them all
    except OSError:
        pass
    return hashlib.sha1(flags.encode()).hexdigest()[:10]


def _sources(with_cuda: bool, csrc: Path = CSRC) -> list[str]:
    files = [csrc / "bindings.cpp", *sorted((csrc / "cpu").glob("*.cpp"))]
    if with_cuda:
        files += sorted((csrc / "cuda").glob("*.cu"))
    return [str(f) for f in files]


def build_key(with_cuda: bool, config: NativeBuildConfig = NativeBuildConfig(), csrc: Path = CSRC) -> str:
    """A hash of everything the compiled extension depends on: the content of every file under
    ``csrc`` (sources and headers), the build flags, the torch and Python versions and this CPU's ISA.

    It is part of the extension's name, so two checkouts or versions on one machine each keep their own
    cached build instead of rebuilding over each other, and an edited kernel is never served stale.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in csrc.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(csrc).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    flags = (config.cxx_flags, config.ld_flags, config.cuda_flags if with_cuda else (), with_cuda)
    versions = (torch.__version__, torch.version.git_version, torch.version.cuda, sys.version_info[:2], _isa_tag())
    digest.update(repr((flags, versions)).encode())
    return digest.hexdigest()[:16]


def build_directory(name: str) -> Path:
    """Folder of extension ``name``: torch's extension cache (``TORCH_EXTENSIONS_DIR`` or the per-user
    default, per Python version and accelerator, as ``torch.utils.cpp_extension`` lays it out)."""
    from torch.utils import cpp_extension

    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root is None:
        accelerator = f"cu{torch.version.cuda.replace('.', '')}" if torch.version.cuda else "cpu"
        root = os.path.join(cpp_extension.get_default_build_root(),
                            f"py{sys.version_info.major}{sys.version_info.minor}_{accelerator}")
    return Path(root) / name


@contextlib.contextmanager
def build_lock(directory: Path, timeout_s: float) -> Iterator[None]:
    """Exclusive right to build or load the extension in ``directory`` among processes, for ``timeout_s``
    seconds at most; inside it, torch's own ``lock`` file is known to be stale and is cleared.

    The lock is an ``fcntl.flock`` on ``directory/build.lock``, which the kernel releases when its owner
    dies (a killed build leaves no lock that would make later runs wait forever, as torch's ``lock``
    file does). Its content names the owner's pid for the error message. Every process that runs
    torch's build holds this lock, so a torch ``lock`` file found while holding it was left by a process
    that died mid-build: it is removed with a one-line warning. Where ``fcntl`` is missing (Windows),
    a torch ``lock`` file older than ``timeout_s`` counts as stale instead.

    Raises:
        NativeBuildError: another live process held the lock for more than ``timeout_s`` seconds.
    """
    directory.mkdir(parents=True, exist_ok=True)
    torch_lock = directory / "lock"
    if fcntl is None:  # pragma: no cover - not POSIX
        _clear_stale_torch_lock(torch_lock, max_age_s=timeout_s)
        yield
        return
    with open(directory / "build.lock", "a+", encoding="utf-8") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    owner = handle.read().strip() or "unknown"
                    raise NativeBuildError(
                        f"waited {timeout_s:.0f} s for another process (pid {owner}) building the native "
                        f"rasterizer in {directory}: if it is stuck, end it; or raise "
                        "NativeBuildConfig.build_timeout_s, or use backend='torch'") from None
                time.sleep(LOCK_POLL_S)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            _clear_stale_torch_lock(torch_lock, max_age_s=0.0)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _clear_stale_torch_lock(torch_lock: Path, max_age_s: float) -> bool:
    """Removes torch's build ``lock`` file when it is older than ``max_age_s``; returns whether it did."""
    try:
        age = time.time() - torch_lock.stat().st_mtime
    except FileNotFoundError:
        return False
    if age < max_age_s:
        return False
    logger.warning("removing the stale build lock %s (left %.0f s ago by a native build that was interrupted)",
                   torch_lock, age)
    torch_lock.unlink(missing_ok=True)
    return True


def snapshot_sources(directory: Path, key: str, with_cuda: bool, config: NativeBuildConfig) -> Path:
    """The kernel sources the extension in ``directory`` is built from: a copy of ``CSRC`` made once,
    when the folder is first built (call it holding :func:`build_lock`).

    Building from a copy inside the build folder keeps ninja's recorded source paths the same for every
    checkout or installed copy whose sources hash to ``key``, so they share one build instead of each
    rebuilding it (ninja rebuilds when a source path changes).

    Raises:
        NativeBuildError: ``CSRC`` changed while it was being copied (its hash is no longer ``key``).
    """
    snapshot = directory / "csrc"
    if snapshot.is_dir():  # made by a rename below, so it is complete
        return snapshot
    staging = directory / "csrc.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(CSRC, staging, ignore=shutil.ignore_patterns("__pycache__"))
    if build_key(with_cuda, config, staging) != key:
        shutil.rmtree(staging, ignore_errors=True)
        raise NativeBuildError(f"the kernel sources in {CSRC} changed while the native build started: run again")
    staging.rename(snapshot)
    return snapshot


def _built(directory: Path, key: str) -> bool:
    """Whether ``directory`` holds a finished build of ``key`` (its marker is written after the build)."""
    try:
        return (directory / BUILT_MARKER).read_text() == key
    except OSError:
        return False


def _import_extension(name: str, directory: Path) -> ModuleType:
    """Imports the finished extension ``name`` from ``directory`` directly, as torch's loader does after a
    build. Going through ``cpp_extension.load`` again would make ninja rebuild it whenever the command line
    changes, and it does change between venvs (torch's include paths), though the binary would not: every
    input that matters is in the key."""
    path = directory / f"{name}{'.pyd' if sys.platform == 'win32' else '.so'}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise NativeBuildError(f"the native extension {path} cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=None)
def _load(with_cuda: bool, config: NativeBuildConfig = NativeBuildConfig()) -> ModuleType:
    """Builds (or loads the cached) extension; raises :class:`NativeBuildError` with the reason."""
    from torch.utils import cpp_extension

    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise NativeBuildError(
            f"no C++ compiler found (looked for {compiler!r}, set CXX to choose one): "
            "install g++ (Debian: apt-get install g++) to use backend='native'"
        )
    if not cpp_extension.is_ninja_available():
        raise NativeBuildError("ninja is not available: pip install ninja to build the native backend")
    if not (CSRC / "bindings.cpp").is_file():
        raise NativeBuildError(f"the kernel sources are missing from {CSRC} (a broken install?)")
    kind = "cuda" if with_cuda else "cpu"
    defines = ["-DD3_WITH_CUDA"] if with_cuda else []
    key = build_key(with_cuda, config)
    name = f"distill3d_native_{kind}_{key}"
    directory = build_directory(name)
    try:
        if _built(directory, key):  # no lock, no ninja: a finished build of this key never changes
            return _import_extension(name, directory)
        with build_lock(directory, config.build_timeout_s):
            if _built(directory, key):  # finished by the process we waited for
                return _import_extension(name, directory)
            csrc = snapshot_sources(directory, key, with_cuda, config)
            logger.warning("compiling the native %s rasterizer (first use, ~1 min) in %s ...", kind, directory)
            module = cpp_extension.load(
                name=name,
                sources=_sources(with_cuda, csrc),
                extra_include_paths=[str(csrc / "include"), str(csrc)],
                extra_cflags=[*config.cxx_flags, *defines],
                extra_cuda_cflags=[*config.cuda_flags, *defines],
                extra_ldflags=list(config.ld_flags),
                build_directory=str(directory),
                with_cuda=with_cuda,
                verbose=config.verbose,
            )
            (directory / BUILT_MARKER).write_text(key)  # written last: its presence means a complete build
            return module
    except NativeBuildError:
        raise
    except Exception as error:  # compiler errors surface as RuntimeError / subprocess errors
        raise NativeBuildError(f"building the native {kind} rasterizer failed: {error}") from error


def _cuda_wanted(device: torch.device) -> bool:
    return device.type == "cuda" and torch.version.cuda is not None and torch.cuda.is_available()


def _extension(device: torch.device) -> ModuleType:
    """The extension that serves tensors on ``device`` (raises :class:`NativeBuildError`)."""
    if device.type not in ("cpu", "cuda"):
        raise NativeBuildError(f"the native backend supports cpu and cuda devices, not {device.type}")
    if device.type == "cuda" and not _cuda_wanted(device):
        raise NativeBuildError("the native CUDA kernels need a CUDA build of torch and a visible GPU")
    kind = device.type
    if kind in _BUILD_ERRORS:  # a failed build is not retried in this process (it would fail again, slowly)
        raise NativeBuildError(_BUILD_ERRORS[kind])
    try:
        return _load(kind == "cuda")
    except NativeBuildError as error:
        _BUILD_ERRORS[kind] = str(error)
        raise


def native_available(device: torch.device | str = "cpu") -> bool:
    """Whether the native kernels build (or are cached) and run on ``device``. Builds on first call."""
    try:
        _extension(torch.device(device))
    except NativeBuildError:
        return False
    return True


def native_build_error() -> str | None:
    """Why the last attempted native build failed (``None`` if every attempt succeeded)."""
    return "; ".join(_BUILD_ERRORS.values()) or None


def _blend_params() -> tuple[float, float, float]:
    return compositing.ALPHA_MIN, compositing.ALPHA_MAX, compositing.TRANSMITTANCE_MIN


class _ProjectGaussians(torch.autograd.Function):
    """EWA projection with the native forward and backward kernels (gradients to means, quats, scales)."""

    @staticmethod
    def forward(ctx, means, quats, scales, viewmats, Ks, width, height, eps2d, near_plane, far_plane):
        params = (width, height, eps2d, near_plane, far_plane, projection.RADIUS_SIGMAS,
                  projection.FRUSTUM_CLAMP_MARGIN)
        radii, means2d, conics, compensations = _extension(means.device).project_forward(
            means, quats, scales, viewmats, Ks, *params
        )
        ctx.save_for_backward(means, quats, scales, viewmats, Ks, radii)
        ctx.params = params
        ctx.mark_non_differentiable(radii)
        return radii, means2d, conics, compensations

    @staticmethod
    def backward(ctx, v_radii, v_means2d, v_conics, v_compensations):
        means, quats, scales, viewmats, Ks, radii = ctx.saved_tensors
        v_means, v_quats, v_scales = _extension(means.device).project_backward(
            means, quats, scales, viewmats, Ks, *ctx.params, radii, v_means2d.contiguous(), v_conics.contiguous(),
            v_compensations.contiguous(),
        )
        return v_means, v_quats, v_scales, None, None, None, None, None, None, None


def project_gaussians_native(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4] wxyz, any non-zero norm
    scales: Tensor,  # [N, 3]
    viewmats: Tensor,  # [C, 4, 4] world -> camera
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Native :func:`distill3d.render.projection.project_gaussians` (same culling, clamping and outputs).

    Returns ``(radii [C, N, 2] int32, means2d [C, N, 2], depths [C, N], conics [C, N, 3],
    compensations [C, N])``, differentiable to ``means``, ``quats`` and ``scales`` by the native backward.
    The kernels give cameras no gradient: when ``viewmats`` or ``Ks`` require one (camera pose
    optimisation), this delegates to the torch reference, whose autograd covers them.
    """
    check_geometry(means, quats, scales)
    check_cameras(viewmats, Ks, width, height)
    check_planes(near_plane, far_plane, eps2d)
    if means.dtype not in FLOAT_DTYPES:
        raise ValueError(f"the native projection supports float32 and float64, got means of dtype {means.dtype}")
    return project_gaussians_native_unchecked(means, quats, scales, viewmats, Ks, width, height, eps2d, near_plane,
                                              far_plane)


def project_gaussians_native_unchecked(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:func:`project_gaussians_native` without input checks, for callers that validated already (the
    checks scan every Gaussian and cost several times the kernel)."""
    if viewmats.requires_grad or Ks.requires_grad:
        return projection.project_gaussians_unchecked(
            means, quats, scales, viewmats, Ks, width, height, eps2d, near_plane, far_plane
        )
    viewmats, Ks = (t.to(device=means.device, dtype=means.dtype).contiguous() for t in (viewmats, Ks))
    radii, means2d, conics, compensations = _ProjectGaussians.apply(
        means.contiguous(), quats.contiguous(), scales.contiguous(), viewmats, Ks, int(width), int(height),
        float(eps2d), float(near_plane), float(far_plane),
    )
    # Depths by the reference's own expression: the tile sort keys hold their float bits, so they must be
    # bitwise the reference's, which a kernel's summation order (or a BLAS's FMAs) would not guarantee.
    means_cam = torch.einsum("cij,nj->cni", viewmats[:, :3, :3], means) + viewmats[:, None, :3, 3]
    return radii, means2d, means_cam[..., 2], conics, compensations


@torch.no_grad()
def isect_tiles_native(
    means2d: Tensor,  # [C, N, 2]
    radii: Tensor,  # [C, N, 2] int32
    depths: Tensor,  # [C, N]
    tile_size: int,
    tile_width: int,
    tile_height: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Native :func:`distill3d.render.tiles.isect_tiles` (same keys, same stable depth order).

    Returns ``(tiles_per_gauss [C, N] int32, isect_ids [M] int64, flatten_ids [M] int32)``.
    """
    check_tensor(means2d, "means2d", ndim=3, shape=(None, None, 2), dtype=FLOAT_DTYPES, nonempty=False)
    check_tensor(radii, "radii", shape=tuple(means2d.shape), nonempty=False, finite=False)
    check_tensor(depths, "depths", shape=tuple(means2d.shape[:2]), dtype=means2d.dtype, nonempty=False)
    for name, value in (("tile_size", tile_size), ("tile_width", tile_width), ("tile_height", tile_height)):
        check_positive(value, name)
    return isect_tiles_native_unchecked(means2d, radii, depths, tile_size, tile_width, tile_height)


@torch.no_grad()
def isect_tiles_native_unchecked(
    means2d: Tensor,  # [C, N, 2]
    radii: Tensor,  # [C, N, 2] int32
    depths: Tensor,  # [C, N]
    tile_size: int,
    tile_width: int,
    tile_height: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`isect_tiles_native` without input checks, for callers whose inputs come from the projection
    (``rasterize``): the checks scan every Gaussian, which costs as much as the CPU binning itself."""
    return _extension(means2d.device).isect_tiles(
        means2d.contiguous(), radii.to(torch.int32).contiguous(), depths.contiguous(), tile_size, tile_width, tile_height
    )


@torch.no_grad()
def isect_offset_encode_native(isect_ids: Tensor, n_cameras: int, tile_width: int, tile_height: int) -> Tensor:
    """Native :func:`distill3d.render.tiles.isect_offset_encode`: ``offsets [C, tile_height, tile_width] int32``."""
    check_tensor(isect_ids, "isect_ids", ndim=1, dtype=torch.int64, nonempty=False)
    for name, value in (("n_cameras", n_cameras), ("tile_width", tile_width), ("tile_height", tile_height)):
        check_positive(value, name)
    return _extension(isect_ids.device).isect_offset_encode(isect_ids.contiguous(), n_cameras, tile_width, tile_height)


def deterministic_backward(device: torch.device | str, requested: bool | None = None) -> bool:
    """Whether the native compositing backward on ``device`` sums gradients in a fixed order.

    Deterministic: each (Gaussian, tile) gradient goes to its own slot and every Gaussian adds its
    slots in tile order, so gradients are bitwise equal run to run (and on the CPU for any thread
    count). Otherwise they are added with atomics in whichever order threads get there, which changes
    the float rounding from run to run. ``requested`` (``True`` / ``False``) decides; ``None`` gives the
    default: always on the CPU, where the ordered sum costs nothing measurable (forward + backward of
    10k Gaussians at 256x256, D = 16, 2 threads: 171 ms CPU either way), on CUDA when
    ``torch.use_deterministic_algorithms(True)`` is in effect (its ordered mode adds a block barrier per
    Gaussian step and a row of gradients per intersection).
    """
    if requested is not None:
        return bool(requested)
    return torch.device(device).type == "cpu" or torch.are_deterministic_algorithms_enabled()


class _RasterizeToPixels(torch.autograd.Function):
    """Compositing with the native forward and backward kernels."""

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, backgrounds, width, height, tile_size, isect_offsets,
                flatten_ids, geometry_channels, deterministic):
        ext = _extension(colors.device)
        blend = _blend_params()
        render, transmittance, last_ids = ext.rasterize_forward(
            means2d, conics, colors, opacities, backgrounds, width, height, tile_size, isect_offsets, flatten_ids,
            geometry_channels, *blend,
        )
        ctx.save_for_backward(means2d, conics, colors, opacities, backgrounds, isect_offsets, flatten_ids,
                              transmittance, last_ids)
        ctx.raster_args = (width, height, tile_size)
        ctx.geometry_channels = geometry_channels
        ctx.deterministic = deterministic
        return render, (1 - transmittance).unsqueeze(-1)

    @staticmethod
    def backward(ctx, v_render, v_alpha):
        means2d, conics, colors, opacities, backgrounds, isect_offsets, flatten_ids, transmittance, last_ids = (
            ctx.saved_tensors
        )
        v_means2d, v_conics, v_colors, v_opacities = _extension(colors.device).rasterize_backward(
            means2d, conics, colors, opacities, backgrounds, *ctx.raster_args, isect_offsets, flatten_ids,
            ctx.geometry_channels, *_blend_params(), transmittance, last_ids,
            v_render.contiguous(), v_alpha.squeeze(-1).contiguous(), ctx.deterministic,
        )
        v_backgrounds = None
        if backgrounds is not None and ctx.needs_input_grad[4]:
            # render = ... + T background for every channel.
            v_backgrounds = (v_render * transmittance.unsqueeze(-1)).sum(dim=(1, 2))
        return v_means2d, v_conics, v_colors, v_opacities, v_backgrounds, None, None, None, None, None, None, None


def rasterize_to_pixels_native(
    means2d: Tensor,  # [C, N, 2]
    conics: Tensor,  # [C, N, 3]
    colors: Tensor,  # [C, N, D]
    opacities: Tensor,  # [C, N]
    width: int,
    height: int,
    tile_size: int,
    isect_offsets: Tensor,  # [C, tile_height, tile_width] int32
    flatten_ids: Tensor,  # [M] int32
    backgrounds: Tensor | None = None,  # [C, D]
    geometry_channels: int | None = None,
    deterministic: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """Native :func:`distill3d.render.compositing.rasterize_to_pixels`, differentiable (native backward).

    Returns ``(render [C, H, W, D], alpha [C, H, W, 1])``. ``geometry_channels`` (default ``D``): only
    channels ``[0, geometry_channels)`` and the alpha output move ``means2d`` / ``conics`` / ``opacities``.
    float32 and float64 are supported (float64 for gradcheck). ``deterministic``: see
    :func:`deterministic_backward` (``None``: its default for the device).
    """
    check_tensor(colors, "colors", ndim=3, dtype=FLOAT_DTYPES, nonempty=False)
    n_cameras, n_gaussians, n_channels = colors.shape
    check_tensor(means2d, "means2d", shape=(n_cameras, n_gaussians, 2), dtype=colors.dtype, nonempty=False)
    check_tensor(conics, "conics", shape=(n_cameras, n_gaussians, 3), dtype=colors.dtype, nonempty=False)
    check_tensor(opacities, "opacities", shape=(n_cameras, n_gaussians), dtype=colors.dtype, nonempty=False)
    if n_channels == 0:
        raise ValueError("colors must have at least one channel (shape [C, N, D] with D >= 1)")
    for name, value in (("width", width), ("height", height), ("tile_size", tile_size)):
        check_positive(value, name)
    tile_width, tile_height = -(-width // tile_size), -(-height // tile_size)
    check_tensor(isect_offsets, "isect_offsets", shape=(n_cameras, tile_height, tile_width), nonempty=False)
    check_tensor(flatten_ids, "flatten_ids", ndim=1, nonempty=False)
    if backgrounds is not None:
        check_tensor(backgrounds, "backgrounds", shape=(n_cameras, n_channels), dtype=colors.dtype)
    geometry_channels = n_channels if geometry_channels is None else int(geometry_channels)
    if not 0 <= geometry_channels <= n_channels:
        raise ValueError(f"geometry_channels must be in [0, {n_channels}], got {geometry_channels}")
    devices = {t.device for t in (means2d, conics, colors, opacities, isect_offsets, flatten_ids)}
    if backgrounds is not None:
        devices.add(backgrounds.device)
    if len(devices) > 1:
        raise ValueError(f"all rasterize_to_pixels_native inputs must be on one device, got {sorted(map(str, devices))}")
    # the kernels index the Gaussians and the id list with these: a value out of range reads outside them
    if flatten_ids.numel() and (int(flatten_ids.min()) < 0 or int(flatten_ids.max()) >= n_cameras * n_gaussians):
        raise ValueError(f"flatten_ids must index the C * N = {n_cameras * n_gaussians} projected Gaussians, got "
                         f"values from {int(flatten_ids.min())} to {int(flatten_ids.max())}")
    starts = isect_offsets.flatten()
    if starts.numel() and (int(starts[0]) < 0 or int(starts[-1]) > flatten_ids.numel()
                           or bool((starts[1:] < starts[:-1]).any())):
        raise ValueError(f"isect_offsets must be non-decreasing tile starts in [0, M = {flatten_ids.numel()}]")
    return rasterize_to_pixels_native_unchecked(means2d, conics, colors, opacities, width, height, tile_size,
                                                isect_offsets, flatten_ids, backgrounds, geometry_channels,
                                                deterministic)


def rasterize_to_pixels_native_unchecked(
    means2d: Tensor,  # [C, N, 2]
    conics: Tensor,  # [C, N, 3]
    colors: Tensor,  # [C, N, D]
    opacities: Tensor,  # [C, N]
    width: int,
    height: int,
    tile_size: int,
    isect_offsets: Tensor,  # [C, tile_height, tile_width] int32
    flatten_ids: Tensor,  # [M] int32
    backgrounds: Tensor | None = None,  # [C, D]
    geometry_channels: int | None = None,
    deterministic: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """:func:`rasterize_to_pixels_native` without input checks, for ``rasterize``, which validated its inputs
    once and built these from them (the finiteness checks alone scan every Gaussian's colours)."""
    geometry_channels = colors.shape[-1] if geometry_channels is None else int(geometry_channels)
    return _RasterizeToPixels.apply(
        means2d.contiguous(), conics.contiguous(), colors.contiguous(), opacities.contiguous(),
        None if backgrounds is None else backgrounds.contiguous(), int(width), int(height), int(tile_size),
        isect_offsets.to(torch.int32).contiguous(), flatten_ids.to(torch.int32).contiguous(), geometry_channels,
        deterministic_backward(colors.device, deterministic),
    )
