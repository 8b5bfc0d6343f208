"""Image and array files, written atomically (:func:`distillcore.serialization.atomic_write`) so an
interrupted build never leaves a truncated file that a resumed build would take as done; JSON goes
through :func:`distillcore.serialization.write_json_atomic`."""
from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np

from distillcore.serialization import atomic_write, describe_error


def write_png(path: Path, image: np.ndarray) -> None:
    """Writes a uint8 or uint16 ``[H, W]`` / ``[H, W, C]`` array as PNG."""
    atomic_write(path, lambda tmp: iio.imwrite(tmp, image, extension=".png"))


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    atomic_write(path, write)


def read_image(path: Path) -> np.ndarray:
    """Reads an image file as an array (``[H, W]`` or ``[H, W, C]``, the file's dtype).

    Raises:
        FileNotFoundError: ``path`` is missing.
        ValueError: ``path`` is truncated, corrupt or not an image (one line naming it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        return np.asarray(iio.imread(path))
    except Exception as err:  # decoders raise OSError, SyntaxError, zlib.error, ValueError, ... on bad bytes
        raise ValueError(f"image file {path} is truncated, corrupt or not an image ({describe_error(err)})") from None


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8, rounded."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
