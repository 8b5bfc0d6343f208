"""Atomic checkpoints: write to a temporary file in the same directory, then ``os.replace``.

A crash mid-write leaves the previous checkpoint intact; ``os.replace`` is atomic on POSIX and
Windows when source and target share a file system.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any

import torch


def save_atomic(state: dict[str, Any], path: str | pathlib.Path) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | pathlib.Path) -> dict[str, Any]:
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=False)
