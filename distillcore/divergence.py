"""Divergence guard shared by every training loop: stop at the first non-finite loss or parameter.

A learning rate far too high makes the loss (or a parameter, or a quantity derived from it such as
``exp(log_scale)``) overflow to Inf or NaN within a few steps; every later step only spreads the NaN,
and a checkpoint written after that point would replace the last good one with garbage. The loops call
:func:`check_finite` once per step, before the backward pass and before any checkpoint, and stop with
one line naming the step, what went non-finite, where the last good checkpoint is, and a hint.
"""
from __future__ import annotations

import pathlib
from typing import Iterable, Mapping

import torch
from torch import Tensor

DEFAULT_HINT = "lower the learning rate"


class TrainingDiverged(ValueError):
    """Training produced a non-finite loss or parameter.

    A ``ValueError`` because its cause is a setting (learning rate, loss weight, input scale) the user
    chose: the console entry points report it as one ``error:`` line and exit code 2.
    """


def _non_finite(value: Tensor | float) -> bool:
    if isinstance(value, Tensor):
        return value.numel() > 0 and not bool(torch.isfinite(value.detach()).all())
    value = float(value)
    return value != value or value in (float("inf"), float("-inf"))


def _describe(value: Tensor | float) -> str:
    """``nan`` / ``inf`` of a scalar loss, ``non-finite`` for a larger tensor."""
    if isinstance(value, Tensor):
        return str(float(value.detach())) if value.numel() == 1 else "non-finite"
    return str(float(value))


def check_finite(step: int | str, loss: Tensor | float | Mapping[str, Tensor | float] | None = None,
                 parameters: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]] | None = None, *,
                 checkpoint: str | pathlib.Path | None = None, checkpoint_step: int | None = None,
                 hint: str = DEFAULT_HINT) -> None:
    """Raises :class:`TrainingDiverged` when the loss or any parameter holds NaN or Inf.

    Args:
        step: the step that went wrong, as the user sees it in the progress bar (1-based; a string
            such as ``"12 of stage 'diffuse'"`` where a step number alone is ambiguous).
        loss: the loss, or a mapping of named loss terms (each checked).
        parameters: named tensors to check (raw parameters or derived quantities such as activated scales).
        checkpoint: the checkpoint file the run writes; named in the message as kept (it is not
            overwritten because the loop stops here), or as absent when it does not exist yet.
        checkpoint_step: the step that checkpoint holds, when known.
        hint: what to try (default: lower the learning rate).
    """
    bad: list[str] = []
    if loss is not None:
        terms = loss.items() if isinstance(loss, Mapping) else [("loss", loss)]
        bad += [f"the {name} is {_describe(v)}" for name, v in terms if _non_finite(v)]
    if parameters is not None:
        items = parameters.items() if isinstance(parameters, Mapping) else parameters
        for name, tensor in items:
            if _non_finite(tensor):
                count = int((~torch.isfinite(tensor.detach())).sum())
                bad.append(f"{name} has {count} non-finite values")
    if not bad:
        return
    if checkpoint is None:
        kept = "no checkpoint was written"
    elif pathlib.Path(checkpoint).is_file():
        at = f" (step {checkpoint_step})" if checkpoint_step is not None else ""
        kept = f"the last good checkpoint{at} is kept at {checkpoint}"
    else:
        kept = f"no checkpoint was written before it ({checkpoint} does not exist)"
    raise TrainingDiverged(f"training diverged at step {step}: {'; '.join(bad[:3])}; {kept}; {hint}")


__all__ = ["TrainingDiverged", "check_finite", "DEFAULT_HINT"]
