"""TensorBoard scalars beside a run (``OUT/tb/``) when ``tensorboard`` is installed; a no-op otherwise.

    with ScalarWriter(out_dir / "tb") as tb:
        tb.add_scalars({"rgb_loss": 0.1, "psnr": 24.0}, step, prefix="train/")

Nothing else depends on TensorBoard: training never fails for its absence, and no folder is created.
"""
from __future__ import annotations

import logging
import math
import os

log = logging.getLogger(f"distillkit.{__name__}")


class ScalarWriter:
    """Writes named scalars per step with ``torch.utils.tensorboard.SummaryWriter``.

    Args:
        log_dir: event folder (``None`` or ``enabled=False``: write nothing).
        enabled: switch without changing call sites.
    """

    def __init__(self, log_dir: str | os.PathLike | None, enabled: bool = True):
        self._writer = None
        if not enabled or log_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's wrapper raises ImportError when tensorboard is absent
            log.debug("tensorboard is not installed: no scalars are written")
            return
        self._writer = SummaryWriter(str(log_dir))

    @property
    def active(self) -> bool:
        """Whether scalars go anywhere."""
        return self._writer is not None

    def add_scalars(self, values: dict[str, float], step: int, prefix: str = "") -> None:
        """One scalar per ``prefix + name`` at ``step``; non-numeric and non-finite values are skipped."""
        if self._writer is None:
            return
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self._writer.add_scalar(prefix + name, float(value), step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "ScalarWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["ScalarWriter"]
