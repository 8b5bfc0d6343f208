"""Image and array files, written atomically (a temporary file, then ``os.replace``) so an interrupted
build never leaves a truncated file that a resumed build would take as done."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import imageio.v3 as iio
import numpy as np


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    write(tmp)
    os.replace(tmp, path)


def write_png(path: Path, image: np.ndarray) -> None:
    """Writes a uint8 or uint16 ``[H, W]`` / ``[H, W, C]`` array as PNG."""
    _atomic(path, lambda tmp: iio.imwrite(tmp, image, extension=".png"))


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    _atomic(path, write)


def write_json(path: Path, obj: Any) -> None:
    _atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2)))


def read_image(path: Path) -> np.ndarray:
    """Reads an image file; a clear FileNotFoundError names it when missing."""
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    return np.asarray(iio.imread(path))


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8, rounded."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
