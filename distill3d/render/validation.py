"""Input checks shared by the rasterizer's public functions (clear errors naming the argument)."""
from __future__ import annotations

import torch
from torch import Tensor

from distillcore.checks import check_positive, check_same_size, check_tensor

# Quaternions shorter than this cannot be normalised into a rotation.
MIN_QUAT_NORM = 1e-12
# |det| of a viewmat's 3x3 block below this is a degenerate camera (a rigid pose has |det| = 1).
MIN_ROTATION_DET = 1e-6


def check_geometry(means: Tensor, quats: Tensor, scales: Tensor) -> int:
    """Checks the Gaussians' geometry and returns N (0 is allowed: an empty scene renders background).

    Quaternions of any non-zero norm are accepted and normalised inside (as gsplat does, so raw optimiser
    parameters can be passed); a zero quaternion has no rotation and is an error.
    """
    check_tensor(means, "means", ndim=2, shape=(None, 3), floating=True, nonempty=False)
    check_tensor(quats, "quats", ndim=2, shape=(None, 4), floating=True, nonempty=False)
    check_tensor(scales, "scales", ndim=2, shape=(None, 3), floating=True, nonempty=False)
    n = check_same_size(
        {"means.shape[0]": means.shape[0], "quats.shape[0]": quats.shape[0], "scales.shape[0]": scales.shape[0]},
        "the number of Gaussians N",
    )
    check_same_dtype_device({"means": means, "quats": quats, "scales": scales})
    if means.dtype not in (torch.float32, torch.float64):  # the kernels (ours and gsplat's) have no half path
        raise ValueError(f"the Gaussians are {means.dtype}: the rasterizer computes in float32 or float64 "
                         "(convert them with .float())")
    # one reduction each (no [N] boolean tensor): these checks run on every rasterize call
    if n and bool(scales.min() <= 0):
        raise ValueError(f"scales must be > 0 (they are standard deviations), got {int((scales <= 0).sum())} values <= 0")
    if n and bool((quats.norm(dim=-1) < MIN_QUAT_NORM).any()):
        bad = int((quats.norm(dim=-1) < MIN_QUAT_NORM).sum())
        raise ValueError(f"quats has {bad} zero-norm quaternions, which define no rotation")
    return n


def check_cameras(viewmats: Tensor, Ks: Tensor, width: int, height: int) -> int:
    """Checks C world-to-camera matrices and pinhole intrinsics; returns C."""
    check_tensor(viewmats, "viewmats", shape=(None, 4, 4), floating=True)
    check_tensor(Ks, "Ks", shape=(None, 3, 3), floating=True)
    c = check_same_size({"viewmats.shape[0]": viewmats.shape[0], "Ks.shape[0]": Ks.shape[0]}, "the number of cameras C")
    if bool((Ks[:, 0, 0] <= 0).any()) or bool((Ks[:, 1, 1] <= 0).any()):
        raise ValueError("Ks must have positive focal lengths Ks[:, 0, 0] and Ks[:, 1, 1]")
    if c:  # an all-zero (or otherwise singular) rotation block projects every point to one spot
        dets = torch.linalg.det(viewmats[:, :3, :3].double()).abs()
        if bool((dets < MIN_ROTATION_DET).any()):
            bad = int(torch.nonzero(dets < MIN_ROTATION_DET)[0, 0])
            raise ValueError(f"viewmats[{bad}] has a singular rotation block (|det| = {float(dets[bad]):.3g}): "
                             "not a world-to-camera pose")
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    return c


def check_same_dtype_device(tensors: dict[str, Tensor]) -> None:
    """All tensors share one dtype and one device."""
    first_name, first = next(iter(tensors.items()))
    for name, t in tensors.items():
        if t.dtype != first.dtype or t.device != first.device:
            raise ValueError(
                f"{name} is {t.dtype} on {t.device} but {first_name} is {first.dtype} on {first.device}; "
                "all inputs must share one dtype and device"
            )


def check_planes(near_plane: float, far_plane: float, eps2d: float) -> None:
    """Clip planes ``0 < near < far`` and a non-negative low-pass ``eps2d``."""
    check_positive(near_plane, "near_plane")
    check_positive(far_plane, "far_plane")
    check_positive(eps2d, "eps2d", strict=False)
    if not near_plane < far_plane:
        raise ValueError(f"near_plane must be < far_plane, got {near_plane} >= {far_plane}")


def check_opacities(opacities: Tensor, n: int) -> None:
    """Opacities in [0, 1], one per Gaussian (pass ``sigmoid(logits)``, as for gsplat)."""
    check_tensor(opacities, "opacities", shape=(n,), floating=True, nonempty=False)
    if opacities.numel() and (bool(opacities.min() < 0) or bool(opacities.max() > 1)):
        raise ValueError("opacities must lie in [0, 1] (pass sigmoid of the logits)")



# Largest render (cameras x height x width pixels) allowed by default: 2^26, an 8192 x 8192 image, whose
# output and per-pixel state take about 1.5 GB at 3 colour channels. A 20000 x 20000 request (400M pixels)
# would allocate about 10 GB before failing; set DISTILLKIT_MAX_PIXELS to raise (or lower) the budget.
DEFAULT_MAX_PIXELS = 1 << 26
MAX_PIXELS_ENV = "DISTILLKIT_MAX_PIXELS"


def max_pixels() -> int:
    """The pixel budget of one render call: ``$DISTILLKIT_MAX_PIXELS`` if set, else ``DEFAULT_MAX_PIXELS``."""
    import os

    raw = os.environ.get(MAX_PIXELS_ENV)
    if raw is None:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_PIXELS_ENV} must be a positive integer, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{MAX_PIXELS_ENV} must be a positive integer, got {raw!r}")
    return value


def check_pixel_budget(n_cameras: int, width: int, height: int) -> None:
    """Refuses a render larger than :func:`max_pixels` before anything is allocated."""
    pixels, budget = int(n_cameras) * int(width) * int(height), max_pixels()
    if pixels > budget:
        raise ValueError(f"render of {n_cameras} x {width} x {height} = {pixels:,} pixels exceeds the budget of "
                         f"{budget:,} pixels (set {MAX_PIXELS_ENV} to allow more, or render smaller/fewer views)")
