"""Input validation shared by every public function of distillkit.

Each check raises ``ValueError`` (or ``TypeError`` for a non-tensor) whose message names the argument
and what is wrong with it, so bad input fails at the call that received it rather than deep inside
a kernel.
"""
from __future__ import annotations

from typing import Sequence

import torch

# A dimension given as None in an expected shape accepts any size.
ShapeSpec = Sequence[int | None]


def all_finite(x: torch.Tensor) -> bool:
    """Whether every value of a floating tensor is finite, in one reduction without a temporary.

    NaN and Inf propagate into a sum (Inf + finite = Inf, Inf - Inf = NaN), so a finite sum proves every
    value finite; only a non-finite sum (a bad value, or finite values that overflow together) pays for
    the element-wise test. About 12x less CPU than ``isfinite(x).all()`` on 16M floats, which made the
    input checks cost more than the projection of a 1M-Gaussian render.
    """
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def check_tensor(
    x: torch.Tensor,
    name: str,
    *,
    ndim: int | Sequence[int] | None = None,
    shape: ShapeSpec | None = None,
    dtype: torch.dtype | Sequence[torch.dtype] | None = None,
    floating: bool = False,
    finite: bool = True,
    nonempty: bool = True,
) -> torch.Tensor:
    """Checks ``x`` and returns it unchanged.

    Args:
        x: the tensor to check.
        name: the argument's name, used in the error message.
        ndim: required number of dimensions (one value or a set of allowed values).
        shape: required shape; ``None`` entries match any size.
        dtype: required dtype (one or several allowed).
        floating: require a floating-point dtype.
        finite: reject NaN and Inf (floating tensors only).
        nonempty: reject tensors with zero elements.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimensions, got shape {tuple(x.shape)}")
    if shape is not None:
        if x.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
            want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
            raise ValueError(f"{name} must have shape {want}, got {list(x.shape)}")
    if dtype is not None:
        allowed_dtypes = (dtype,) if isinstance(dtype, torch.dtype) else tuple(dtype)
        if x.dtype not in allowed_dtypes:
            raise ValueError(f"{name} must have dtype {' or '.join(map(str, allowed_dtypes))}, got {x.dtype}")
    if floating and not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if nonempty and x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {list(x.shape)})")
    if finite and x.is_floating_point() and x.numel() > 0 and not all_finite(x):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} has {bad} non-finite (NaN or Inf) values")
    return x


def check_same_size(dim_sizes: dict[str, int], what: str) -> int:
    """Checks that several arguments agree on one size (e.g. the number of Gaussians) and returns it.

    ``dim_sizes`` maps a description such as ``"means.shape[0]"`` to its size.
    """
    sizes = set(dim_sizes.values())
    if len(sizes) > 1:
        listing = ", ".join(f"{k}={v}" for k, v in dim_sizes.items())
        raise ValueError(f"arguments disagree on {what}: {listing}")
    return next(iter(sizes))


def check_positive(value: float, name: str, *, strict: bool = True) -> float:
    """Checks a scalar hyper-parameter is (strictly) positive and finite."""
    v = float(value)
    if not (v > 0 if strict else v >= 0) or v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be {'> 0' if strict else '>= 0'} and finite, got {value}")
    return v


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    if low is None:
        return f"{'<' if high_open else '<='} {high}"
    return f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def check_range(value, name: str, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False, integer: bool = False):
    """Checks a scalar setting lies in an interval and returns it unchanged.

    Args:
        value: the value to check (a bool is rejected where a number is expected).
        name: the setting's name, used in the error message (e.g. ``"loss.feature_weight"``).
        low, high: bounds (``None``: unbounded on that side).
        low_open, high_open: exclude the bound itself (``(0, 1]`` is ``low=0, high=1, low_open=True``).
        integer: require an ``int``.

    Raises ``ValueError("NAME must be ... in (0, 1], got 1.5")``; NaN and infinities are always rejected.
    """
    kind = "an integer" if integer else "a number"
    where = _interval(low, high, low_open, high_open) if (low is not None or high is not None) else "finite"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ValueError(f"{name} must be {kind} {where}, got {value!r}")
    v = float(value)
    ok = v == v and v not in (float("inf"), float("-inf"))
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        in_ = "" if where == "finite" or where[0] in "<>" else "in "
        raise ValueError(f"{name} must be {in_}{where}, got {value!r}")
    return value


def check_choice(value, name: str, choices) -> object:
    """Checks ``value`` is one of ``choices`` and returns it."""
    if value not in tuple(choices):
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_device(device) -> "torch.device":
    """Checks a torch device name parses and exists here; returns the ``torch.device``.

    ``cuda`` on a machine (or a torch build) without CUDA is one clear error naming what is available,
    instead of a traceback from the first tensor moved there.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r} ({err})") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r} is not available: this torch build has no usable CUDA device "
                             "(available: cpu)")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r} is not available: {count} CUDA device(s) here "
                             f"(cuda:0 .. cuda:{count - 1})")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} is not available here (available: cpu)")
    return dev
