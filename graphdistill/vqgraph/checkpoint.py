"""Atomic file writes: write a temporary file next to the target, then ``os.replace`` it, so a crash
never leaves a half-written checkpoint or model behind."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Calls ``write(tmp_path)`` and renames the result to ``path`` (creating parent folders)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def atomic_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` made atomic."""
    import torch

    atomic_write(path, lambda tmp: torch.save(obj, tmp))
