"""Learning-rate and loss-weight schedules: 3DGS exponential decay, linear warm-up, progress ramp.

Exponential decay with delay (3DGS ``get_expon_lr_func``, after Mip-NeRF), for step :math:`s`,
:math:`t = \\mathrm{clip}(s / S_{max}, 0, 1)` and delay :math:`D` = ``warmup_steps``:

.. math::
    \\eta(s) = \\Big[\\rho + (1 - \\rho) \\sin\\big(\\tfrac{\\pi}{2} \\mathrm{clip}(s / D, 0, 1)\\big)\\Big]
        \\cdot \\exp\\big((1 - t) \\log \\eta_0 + t \\log \\eta_1\\big)

with :math:`\\rho` = ``lr_delay_mult`` (the bracket is 1 when :math:`D = 0`): a log-linear decay from
:math:`\\eta_0` to :math:`\\eta_1`, scaled during the first :math:`D` steps by a sine ramp from
:math:`\\rho` to 1. :math:`\\eta(s) = 0` for :math:`s < 0` or :math:`\\eta_0 = \\eta_1 = 0`, as in 3DGS.

Linear warm-up: :math:`\\min(1, s / W)`, 0 at the first step and 1 from step :math:`W` on (the
convention of ``transformers.get_linear_schedule_with_warmup``; 1 for :math:`W = 0`). Progress ramp: 0 before ``start``, linear in between,
1 from ``end`` on (PRD's progressive distillation weight).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from distillcore.checks import check_positive


def _check_step(step: float) -> float:
    s = float(step)
    if not math.isfinite(s):
        raise ValueError(f"step must be finite, got {step}")
    return s


def _check_count(value: int, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def exponential_decay(
    step: int,
    lr_init: float,
    lr_final: float,
    max_steps: int,
    warmup_steps: int = 0,
    lr_delay_mult: float = 1.0,
) -> float:
    """3DGS ``get_expon_lr_func(lr_init, lr_final, lr_delay_steps=warmup_steps, lr_delay_mult,
    max_steps)(step)``; see the module docstring for the formula."""
    s = _check_step(step)
    lr0 = check_positive(lr_init, "lr_init", strict=False)
    lr1 = check_positive(lr_final, "lr_final", strict=False)
    if max_steps <= 0 or int(max_steps) != max_steps:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    delay = _check_count(warmup_steps, "warmup_steps")
    mult = check_positive(lr_delay_mult, "lr_delay_mult", strict=False)
    if s < 0 or (lr0 == 0.0 and lr1 == 0.0):
        return 0.0
    if lr0 == 0.0 or lr1 == 0.0:
        raise ValueError(f"lr_init and lr_final must both be > 0 (or both 0), got {lr_init} and {lr_final}")
    if delay > 0:
        delay_rate = mult + (1.0 - mult) * math.sin(0.5 * math.pi * min(max(s / delay, 0.0), 1.0))
    else:
        delay_rate = 1.0
    t = min(max(s / max_steps, 0.0), 1.0)
    return delay_rate * math.exp(math.log(lr0) * (1.0 - t) + math.log(lr1) * t)


def linear_warmup(step: int, warmup_steps: int) -> float:
    """Warm-up factor in [0, 1]: ``min(1, step / warmup_steps)``, 1 without warm-up."""
    s = _check_step(step)
    w = _check_count(warmup_steps, "warmup_steps")
    if s < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return 1.0 if w == 0 else min(1.0, s / w)


def progress_ramp(step: int, start: int, end: int) -> float:
    """0 before ``start``, ``(step - start) / (end - start)`` in between, 1 from ``end`` on."""
    s = _check_step(step)
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        raise ValueError(f"progress_ramp needs finite start <= end, got start={start}, end={end}")
    if s >= end:
        return 1.0
    if s <= start:
        return 0.0
    return (s - start) / (end - start)


@dataclass
class ExponentialDecayConfig:
    """A 3DGS learning-rate schedule as a config; call it with the step."""

    lr_init: float
    lr_final: float
    max_steps: int
    warmup_steps: int = 0
    lr_delay_mult: float = 1.0

    def __post_init__(self) -> None:
        exponential_decay(0, self.lr_init, self.lr_final, self.max_steps, self.warmup_steps, self.lr_delay_mult)

    def __call__(self, step: int) -> float:
        return exponential_decay(step, self.lr_init, self.lr_final, self.max_steps, self.warmup_steps, self.lr_delay_mult)


__all__ = ["exponential_decay", "linear_warmup", "progress_ramp", "ExponentialDecayConfig"]
