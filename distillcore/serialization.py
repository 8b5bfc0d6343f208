"""The toolkit's one way to write files atomically and to read checkpoints safely.

Writes: every file goes to a temporary file in the target's own folder (so the final rename stays on
one file system), is flushed to disk, then renamed over the target with ``os.replace``, which is
atomic on POSIX and Windows. A crash or an exception mid-write leaves the previous file intact and
removes the temporary file. The temporary name carries the process id and a random suffix, so
concurrent writers of one target never share a temporary file (the last rename wins, whole).

Reads: :func:`load_state` is ``torch.load(..., weights_only=True)``: a checkpoint is data, never code.
A file that needs more than plain data to unpickle (a crafted payload, or a checkpoint pickling
arbitrary Python objects) is refused before anything in it runs.

Checkpoint format rule: everything the toolkit saves with :func:`save_atomic` holds only dicts, lists,
tuples, tensors (incl. ``state_dict`` and optimizer states) and ``str`` / ``int`` / ``float`` /
``bool`` / ``None``. Configs are stored as ``dataclasses.asdict`` dicts and rebuilt on load, numpy
arrays as tensors, random-number-generator states as tensors or plain tuples/dicts of ints. Anything
added to a checkpoint later (RNG states, input fingerprints, ...) must follow the same rule, so that
it stays loadable under ``weights_only=True``; ``tests/reliability/test_serialization.py`` checks it.

JSON: :func:`write_json_atomic` writes strict JSON. Non-finite floats become ``null`` (e.g. the PSNR of
a render identical to its target is infinite and is reported as ``null``), never ``Infinity`` / ``NaN``,
which most JSON readers reject.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import pickle
import re
import secrets
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

# torch is imported where a function needs it: the JSON and text writers serve CLI code paths
# (config files, --help) that should not pay for importing torch

PathLike = str | os.PathLike


def _temporary_path(path: Path) -> Path:
    # keeps the target's suffix last: some writers pick the format from it
    return path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # makes the rename itself durable; not possible on every platform / file system
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Calls ``write(tmp)`` to write a temporary file beside ``path``, then renames it to ``path``.

    Parent folders are created. On any exception (or interrupt) the temporary file is removed and
    the previous ``path``, if any, is left as it was.

    Args:
        path: the file to write.
        write: writes the complete file to the path it is given (the temporary file).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if path.is_dir():  # found now, before the write, and named as the user gave it
        raise IsADirectoryError(21, "Is a directory", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_path(path)
    try:
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def save_atomic(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj, path)`` made atomic (see :func:`atomic_write`).

    ``obj`` should follow the module's checkpoint format rule so that :func:`load_state` can read it.
    """
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def write_bytes_atomic(path: PathLike, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def json_safe(obj: Any) -> Any:
    """``obj`` with tuples as lists, numpy / torch scalars as Python numbers and non-finite floats as
    ``None``, so that strict JSON (``allow_nan=False``) can hold it."""
    if isinstance(obj, dict):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(value) for value in obj]
    torch = sys.modules.get("torch")  # without torch imported, obj cannot be a tensor
    if torch is not None and isinstance(obj, torch.Tensor) and obj.numel() == 1:
        obj = obj.item()
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


def to_json(obj: Any, *, indent: int | None = 2) -> str:
    """``obj`` as strict JSON text (:func:`json_safe`: ``inf`` / ``nan`` become ``null``), for files and
    for the results a command prints."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)


def write_json_atomic(path: PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Writes ``obj`` as strict JSON to ``path`` atomically; ``inf`` / ``nan`` are written as ``null``.

    Args:
        path: the file to write.
        obj: dicts, lists, tuples, strings, numbers (Python, numpy or one-element tensors), bools, None.
        indent: as :func:`json.dumps`.

    Raises:
        TypeError: ``obj`` holds something JSON cannot represent.
    """
    return write_text_atomic(path, to_json(obj, indent=indent) + "\n")


def read_json_object(path: PathLike, *, what: str = "file") -> dict:
    """The JSON object in ``path`` (a file a user may have written by hand).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not UTF-8 JSON, or JSON that is not an object; the message names ``what`` and the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {path} is not valid JSON ({err.msg} at line {err.lineno})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{what} {path} is not valid JSON (not UTF-8 text)") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} must hold a JSON object, got {type(data).__name__}")
    return data


# torch names the Python object a refused file asks for as "GLOBAL module.name" ("Unsupported class
# module.name" before torch 2.4)
_GLOBAL = re.compile(r"(?:GLOBAL|Unsupported class) ([\w.]+)")
_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation", "(1)", "(2)",
                "In PyTorch 2.6")


def load_state(path: PathLike, *, what: str = "checkpoint", map_location: Any = "cpu") -> Any:
    """Reads a file written by :func:`save_atomic` (or any plain-data ``torch.save`` file) without
    running code from it: ``torch.load(path, weights_only=True)``.

    Args:
        path: the file to read.
        what: what the file should be, for the error messages ("checkpoint", "decoder file", ...).
        map_location: as :func:`torch.load` (default: CPU).

    Raises:
        FileNotFoundError: ``path`` does not exist or is not a file.
        ValueError: one line naming ``path`` when it is truncated or corrupt, or when it holds more
            than plain data (pickled code or Python objects: refused, nothing in it is run).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns before refusing a raw pickle: the error says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            warnings.filterwarnings("ignore", message=".*looks like a TorchScript archive")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = _GLOBAL.search(str(err))
        if unsafe:
            raise ValueError(f"{what} {path} was written by an older distillkit or is not a plain-tensor "
                             f"checkpoint: it asks for the Python object {unsafe.group(1)}, and loading that "
                             "could run code, so the file was refused") from None
        raise ValueError(f"{what} {path} is corrupt or not a plain-tensor torch.save file ({_detail(err)})") from None
    except PermissionError:
        raise ValueError(f"{what} {path} cannot be read: permission denied") from None
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, UnicodeDecodeError, ValueError, KeyError,
            IndexError, AttributeError, TypeError, OverflowError, MemoryError) as err:
        if isinstance(err, RuntimeError) and "TorchScript archive" in str(err):
            raise ValueError(f"{what} {path} is a TorchScript export (a compiled model for deployment), not a "
                             f"{what}: give the file the export was made from") from None
        # what torch.load raises on a truncated archive or on bytes that are not a checkpoint
        raise ValueError(f"{what} {path} is truncated or corrupt ({describe_error(err)})") from None


def load_arrays(path: PathLike, *, what: str = "array file") -> Any:
    """Reads a NumPy ``.npy`` (-> the array) or ``.npz`` (-> ``{name: array}``, every member read now)
    with ``allow_pickle=False``: object arrays are refused, nothing in the file is run.

    Raises:
        FileNotFoundError: ``path`` does not exist or is not a file.
        ValueError: one line naming ``path`` when it is truncated, corrupt, or holds pickled objects.
    """
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:  # members are read lazily: read them here, where a damaged one can be named
                return {name: data[name] for name in data.files}
        return data
    except PermissionError:
        raise ValueError(f"{what} {path} cannot be read: permission denied") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} {path} is truncated, corrupt or not a NumPy file ({describe_error(err)})") from None


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    # torch's messages go on with advice after the first sentence
    return lines[0].split(". ")[0].rstrip(".") if lines else "no details"


def describe_error(err: BaseException) -> str:
    """``"Type: first sentence"`` of a reader's exception, for one-line "file X is corrupt" errors."""
    return f"{type(err).__name__}: {_first_line(err)}"


def _detail(err: BaseException) -> str:
    """The informative line of torch's multi-line weights-only error."""
    for line in str(err).splitlines():
        line = line.strip().removeprefix("WeightsUnpickler error:").strip()
        if line and not line.startswith(_BOILERPLATE):
            return line
    return _first_line(err)


__all__ = ["atomic_write", "save_atomic", "write_bytes_atomic", "write_text_atomic", "json_safe",
           "write_json_atomic", "to_json", "read_json_object", "load_state", "load_arrays", "describe_error"]
