"""Run folders: what a training run writes into ``--out``, and the rules that keep results safe.

A run is identified by a **fingerprint** of its inputs, not by a folder name::

    {"version": distillkit version, "scene": {"path", "content"}, "config": {...}, <named inputs>}

``scene.content`` is :func:`scene_content_hash`; ``config`` is the resolved config dict without the
fields that cannot change results (:data:`VOLATILE_FIELDS`: logging, checkpoint cadence, device,
threads, output paths). The fingerprint is written to ``OUT/run.json`` (and by the trainers into
their checkpoints), and a resumed or reused run must match it.

:class:`RunDirectory` guards one output folder (or one output file, :meth:`RunDirectory.for_file`)
for the length of a run, in this order, before any work:

1. ``--out`` must be creatable and writable: a probe file is created and removed;
2. a lock (``OUT/.lock``, ``fcntl.flock`` non-blocking) so a second run into the same ``--out``
   fails at once, naming the holder's pid, host and start time. The OS drops the lock when its
   process dies, so a killed run never blocks the next one;
3. temporary files left by a killed run (``.name.*.tmp*``, ``name.tmp``) are removed (the lock
   guarantees nobody is writing them), and again when the run ends, whatever the outcome;
4. an existing run there (``run.json`` or one of the run's marker files) is continued only with
   ``resume=True`` and a matching fingerprint, replaced only with ``overwrite=True`` (which removes
   the run's own files, never anything else), and otherwise refused with one line. A run that fails
   before writing any of its marker files (bad input found late) leaves no ``run.json`` behind, so the
   corrected command needs no ``--overwrite``; a killed run leaves a partial run to resume.

Every refusal is a :class:`RunError` (a ``ValueError``), which the console entry points print as one
``prog: error: ...`` line with exit code 2.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from distillcore.serialization import write_json_atomic

log = logging.getLogger(f"distillkit.{__name__}")  # the hierarchy distillcore.config_cli prints

# Config fields that do not change what a run computes: they are left out of fingerprints.
VOLATILE_FIELDS = frozenset({"eval_every", "checkpoint_every", "progress", "no_progress", "quiet", "threads",
                             "out", "out_dir", "device", "cache", "cache_dir"})


@dataclass(frozen=True)
class HashConfig:
    """How :func:`scene_content_hash` reads files.

    Files up to ``full_bytes`` are hashed whole (camera files, and every image of the bundled and
    rendered scenes: a 40-view 800 x 800 PNG scene is about 20-30 MB, hashed in well under a second).
    Larger files (multi-megabyte photos) are identified by their size and ``sample_bytes`` read at the
    start, middle and end, so a 200-photo COLMAP folder costs milliseconds, not a full read; a
    re-encoded or edited photo changes its size or these bytes in practice. Modification times are
    not used: a copied scene has the same content and the same hash.
    """
    full_bytes: int = 4 << 20
    sample_bytes: int = 64 << 10


# data-set folders (real KITTI: thousands of multi-MB scans; public graph sets): small files whole, the rest sampled
DATASET_HASH = HashConfig(full_bytes=64 << 10, sample_bytes=4 << 10)


class RunError(ValueError):
    """A run cannot start in its output folder (in use, not writable, holds another run, mismatch)."""


class RunLockedError(RunError):
    """Another live process holds the output folder's lock."""


def distillkit_version() -> str:
    """The installed distillkit version (``"unknown"`` when running from an uninstalled tree)."""
    from importlib import metadata

    try:
        return metadata.version("distillkit")
    except metadata.PackageNotFoundError:
        return "unknown"


def _is_run_folder(folder: Path) -> bool:
    return (folder / RUN_INFO).is_file()


def scene_content_hash(path: str | os.PathLike, config: HashConfig = HashConfig()) -> str:
    """SHA-256 (hex) of a scene folder's content: every regular file's relative path, size and bytes
    (whole, or sampled for large files, see :class:`HashConfig`).

    Hidden files and run folders nested inside the scene (a folder with a ``run.json``) are skipped,
    so training into a folder under the scene does not change the scene's hash.

    Raises:
        FileNotFoundError: ``path`` is not a folder.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"scene folder not found: {root}")
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        folder = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not _is_run_folder(folder / d))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            file = folder / name
            if not file.is_file():
                continue
            size = file.stat().st_size
            digest.update(f"{file.relative_to(root).as_posix()}\0{size}\0".encode())
            with open(file, "rb") as handle:
                if size <= config.full_bytes:
                    digest.update(hashlib.sha256(handle.read()).digest())
                else:
                    for offset in (0, size // 2, size - config.sample_bytes):
                        handle.seek(offset)
                        digest.update(handle.read(config.sample_bytes))
    return digest.hexdigest()


# Volatile only as on/off switches: "progress" also names model settings (PRD's progress map, "learned" / "one")
SWITCH_FIELDS = frozenset({"progress", "no_progress", "quiet"})


def _volatile(key: str, value: Any, ignore: frozenset) -> bool:
    return key in ignore and (key not in SWITCH_FIELDS or value is None or isinstance(value, bool))


def strip_volatile(config: Any, ignore: Iterable[str] = VOLATILE_FIELDS) -> Any:
    """``config`` (nested dicts / lists) without the keys in ``ignore``, at any depth (``SWITCH_FIELDS`` only
    where they hold a bool); tuples as lists so that a config and its JSON round trip compare equal."""
    ignore = frozenset(ignore)
    if isinstance(config, dict):
        return {k: strip_volatile(v, ignore) for k, v in config.items() if not _volatile(k, v, ignore)}
    if isinstance(config, (list, tuple)):
        return [strip_volatile(v, ignore) for v in config]
    return config


def run_fingerprint(*, scene: str | os.PathLike | None = None, config: dict | None = None,
                    ignore: Iterable[str] = VOLATILE_FIELDS, hash_config: HashConfig = HashConfig(),
                    **inputs: Any) -> dict:
    """The fingerprint of a run's inputs (module docstring); plain data, storable in JSON and checkpoints.

    Args:
        scene: the scene folder (hashed with :func:`scene_content_hash`), or None.
        config: the resolved config as a dict (``dataclasses.asdict``), or None.
        ignore: config keys left out (default :data:`VOLATILE_FIELDS`).
        hash_config: how the scene folder is read (:class:`HashConfig`).
        **inputs: further named inputs that change results (teacher, downsample, data set, ...);
            JSON-like values.
    """
    fingerprint: dict[str, Any] = {"version": distillkit_version()}
    if scene is not None:
        fingerprint["scene"] = {"path": str(Path(scene).resolve()), "content": scene_content_hash(scene, hash_config)}
    if config is not None:
        fingerprint["config"] = strip_volatile(config, ignore)
    fingerprint.update(strip_volatile(inputs, ()))
    return fingerprint


def fingerprint_key(fingerprint: dict) -> str:
    """A short stable hash of a fingerprint (scene paths excluded: a copied scene is the same input)."""
    content = dict(fingerprint)
    if isinstance(content.get("scene"), dict):
        content["scene"] = content["scene"].get("content")
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _input_names(fingerprint: dict) -> set[str]:
    """The kinds of input a fingerprint records (``scene``, ``teacher``, ``config.lr``, ...): the same for two
    runs of one command, largely different for runs of two commands."""
    config = fingerprint.get("config")
    return ({k for k in fingerprint if k not in ("version", "config")}
            | ({f"config.{k}" for k in config} if isinstance(config, dict) else set()))


def describe_mismatch(stored: dict, current: dict, ignore: Iterable[str] = ()) -> str | None:
    """None when two fingerprints agree, else a phrase naming the first difference, to follow
    "<checkpoint> " in a message, e.g. ``was trained on scene /a (content hash 1a2b3c4d5e6f) but the
    scene given is /b (3c4d5e6f7a8b)``; fingerprints that share fewer than half of their kinds of input
    (:func:`_input_names`) are runs of two commands, and the phrase says so. Keys in ``ignore`` (dotted,
    e.g. ``config.steps``) are skipped."""
    ignore = set(ignore)
    names_s, names_c = _input_names(stored), _input_names(current)
    if len(names_s & names_c) < len(names_s | names_c) / 2:
        return (f"holds the run of another command (its inputs: {', '.join(sorted(names_s)) or 'none'}; this "
                f"command's: {', '.join(sorted(names_c)) or 'none'})")
    s_scene, c_scene = stored.get("scene"), current.get("scene")
    if (s_scene or c_scene) and (s_scene or {}).get("content") != (c_scene or {}).get("content"):
        def show(scene):
            return "no scene" if not scene else f"scene {scene.get('path')} (content hash {str(scene.get('content'))[:12]})"
        return f"was trained on {show(s_scene)} but the scene given is {show(c_scene)[6:] if c_scene else 'none'}"
    if stored.get("version") != current.get("version") and "version" not in ignore:
        return f"was written by distillkit {stored.get('version')}, this is {current.get('version')}"
    flat_s = _flatten({k: v for k, v in stored.items() if k not in ("scene", "version")}, "")
    flat_c = _flatten({k: v for k, v in current.items() if k not in ("scene", "version")}, "")
    for key in sorted(set(flat_s) | set(flat_c)):
        if key in ignore:
            continue
        missing = "<unset>"
        a, b = flat_s.get(key, missing), flat_c.get(key, missing)
        if a != b:
            return f"was trained with {key}={a!r} but this run has {key}={b!r}"
    return None


def check_writable(folder: str | os.PathLike, what: str = "--out") -> Path:
    """Creates ``folder`` (with parents) and proves it writable by creating and removing a probe file.

    Raises:
        RunError: one line naming the folder and why it is unusable (a parent is a file, no permission,
            read-only file system, ...).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}-{secrets.token_hex(4)}"
        with open(probe, "x") as handle:
            handle.write("probe")
        probe.unlink()
    except FileExistsError:
        raise RunError(f"{what} {folder} is not a folder (a file of that name exists)") from None
    except NotADirectoryError:
        raise RunError(f"{what} {folder} cannot be created: one of its parents is a file") from None
    except OSError as err:
        raise RunError(f"{what} {folder} is not writable ({err.strerror or err}): choose another {what}") from None
    return folder


def check_output_is_not_input(out: str | os.PathLike, source: str | os.PathLike, what: str = "--out") -> None:
    """Refuses an output path that is (or links to) an input file, so a command never writes over
    what it reads.

    Raises:
        RunError: ``out`` resolves to ``source`` (same path, or the same file through a link).
    """
    out, source = Path(out), Path(source)
    same = out.resolve() == source.resolve()
    if not same and out.exists() and source.exists():
        same = os.path.samefile(out, source)
    if same:
        raise RunError(f"{what} {out} is the input file {source}: write the result to another file")


LOCK_NAME = ".lock"
RUN_INFO = "run.json"
# temporary names of distillcore.serialization (".stem.<pid>-<hex>.tmp.suffix") and of older writers
# (".name.tmp<pid>", "name.tmp"), and write probes of check_writable
_TEMP = re.compile(r"^\..*\.tmp(\d*|\.[^.]+)$|\.tmp$|^\.write-probe-\d+-[0-9a-f]+$")


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary file name of an atomic write (ours or an older writer's)."""
    return bool(_TEMP.search(name))


class FileLock:
    """An exclusive ``fcntl.flock`` on ``path`` whose file records the holder (pid, host, start time).

    Args:
        path: the lock file (created if missing; never deleted, so two processes can never lock two
            different files of one name).
        what: the thing locked, for the message (e.g. the output folder).
        wait: block until the holder finishes (logging who is waited for) instead of failing.
    """

    def __init__(self, path: str | os.PathLike, what: str, wait: bool = False):
        self.path, self.what, self.wait = Path(path), what, wait
        self._fd: int | None = None

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        if not info:
            return "another process"
        return f"pid {info.get('pid')} on {info.get('host')} (started {info.get('started')})"

    def acquire(self) -> "FileLock":
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not self.wait:
                    raise RunLockedError(f"{self.what} is in use by {self.holder()}: wait for that run to finish, "
                                         "or use another --out") from None
                log.warning("%s is in use by %s: waiting for it", self.what, self.holder())
                fcntl.flock(fd, fcntl.LOCK_EX)
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "started": datetime.datetime.now().isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class RunDirectory:
    """Guards one run's output folder for the duration of ``with`` (module docstring).

    Args:
        out: the output folder.
        fingerprint: :func:`run_fingerprint` of this run's inputs.
        resume: continue a run found there (its fingerprint must match).
        overwrite: replace a run found there (its files in ``outputs`` and ``run.json`` are removed first).
        markers: files (relative to ``out``) whose presence means a run is there, besides ``run.json``.
        outputs: files and folders the run writes (removed by ``overwrite``); ``markers`` are included.
        resume_ignore: dotted fingerprint keys allowed to differ on resume (e.g. ``config.steps``: a
            run may be continued to more steps).
        info: extra top-level entries for ``run.json`` (e.g. what a later command needs to find).
        wait: wait for a run holding the lock to finish instead of failing (for shared cached stages).
        record_info: write ``run.json`` (off for outputs that are never resumed, e.g. one exported file).

    Attributes after entering: ``existing`` (a run was found), ``resumed`` (it is being continued),
    ``previous`` (the found ``run.json`` as a dict, or None).

    Example::

        with RunDirectory(out, fingerprint=fp, resume=args.resume, overwrite=args.overwrite,
                          markers=("checkpoint.pt",)) as run:
            ...  # train; checkpoints may carry run.fingerprint
            run.complete(step=7000)
    """

    def __init__(self, out: str | os.PathLike, *, fingerprint: dict, resume: bool = False, overwrite: bool = False,
                 markers: Iterable[str] = ("checkpoint.pt",), outputs: Iterable[str] = (),
                 resume_ignore: Iterable[str] = (), info: dict | None = None, wait: bool = False,
                 record_info: bool = True, _file: str | None = None):
        if resume and overwrite:
            raise RunError("--resume and --overwrite contradict each other: give one")
        self.out = Path(out)
        self.fingerprint, self.resume, self.overwrite = fingerprint, resume, overwrite
        self.markers = tuple(markers)
        self.outputs = tuple(dict.fromkeys((*self.markers, *outputs)))
        self.resume_ignore, self.info, self.wait = tuple(resume_ignore), dict(info or {}), wait
        self.record_info = record_info
        self._file = _file  # file mode: the run is one file in `out`, lock and info beside it
        self.existing = self.resumed = False
        self.previous: dict | None = None
        self._lock: FileLock | None = None

    @classmethod
    def for_file(cls, path: str | os.PathLike, **kwargs) -> "RunDirectory":
        """A run whose output is the single file ``path`` (a checkpoint): its lock is
        ``.<name>.lock`` beside it, its info ``<name>.run.json``; other files of the folder are not
        touched, so several runs can write different files of one folder."""
        path = Path(path)
        if path.is_dir():
            raise RunError(f"--out {path} is a folder: give the file to write")
        return cls(path.parent, markers=(path.name,), _file=path.name, **kwargs)

    # ------------------------------------------------------------------------------------ paths
    @property
    def info_path(self) -> Path:
        return self.out / (f"{self._file}.run.json" if self._file else RUN_INFO)

    @property
    def lock_path(self) -> Path:
        return self.out / (f".{self._file}.lock" if self._file else LOCK_NAME)

    @property
    def label(self) -> str:
        return str(self.out / self._file) if self._file else str(self.out)

    # ------------------------------------------------------------------------------------ life cycle
    def __enter__(self) -> "RunDirectory":
        check_writable(self.out)
        self._lock = FileLock(self.lock_path, self.label, wait=self.wait).acquire()
        try:
            self.clean_temporary()
            self._check_existing()
            if not (self.resumed and (self.previous or {}).get("status") == "complete"):
                self._write_info("running")  # a finished run being checked or extended stays marked finished
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.clean_temporary()
            if (exc_type is not None and self.record_info and not self.resumed
                    and not any((self.out / name).exists() for name in self.markers)):
                # failed before writing anything to resume (bad input, missing teacher weights, ...):
                # leave no run behind, so the corrected command needs no --overwrite
                self.info_path.unlink(missing_ok=True)
        finally:
            if self._lock is not None:
                self._lock.release()

    @property
    def _record_names(self) -> tuple[str, ...]:
        """The run record's file name, if this run keeps one: without it only the outputs are this run's."""
        return (self.info_path.name,) if self.record_info else ()

    def _check_existing(self) -> None:
        found = [name for name in (*self._record_names, *self.markers) if (self.out / name).exists()]
        self.existing = bool(found)
        if not found:
            return
        if self.info_path.is_file():
            try:
                self.previous = json.loads(self.info_path.read_text())
            except ValueError:
                self.previous = None
        state = (self.previous or {}).get("status", "partial")
        if self.overwrite:
            self._remove_outputs()
            log.info("%s: replacing the %s found there (--overwrite)", self.label,
                     f"{state} run" if self.record_info else "files")
            return
        if not self.record_info:
            raise RunError(f"{self.label} already exists: pass --overwrite to replace it, or choose another --out")
        if not self.resume:
            raise RunError(f"{self.label} already holds a {'finished' if state == 'complete' else 'partial'} run "
                           f"({', '.join(found)}): pass --resume to continue it, --overwrite to replace it, "
                           "or use another --out")
        stored = (self.previous or {}).get("fingerprint")
        if stored is None:
            raise RunError(f"{self.label} holds a run without a fingerprint of its inputs (older distillkit), so it "
                           "cannot be checked against this one: use --overwrite or another --out")
        problem = describe_mismatch(stored, self.fingerprint, self.resume_ignore)
        if problem:
            marker = next((self.out / m for m in self.markers if (self.out / m).exists()), self.out)
            raise RunError(f"{marker} {problem}; use another --out or --overwrite")
        self.resumed = True

    def _remove_outputs(self) -> None:
        for name in (*self.outputs, *self._record_names):
            target = self.out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()

    def clean_temporary(self) -> list[Path]:
        """Removes temporary files of interrupted atomic writes (of this run's file in file mode, of the
        whole folder tree of a run folder, of the output folders only where there is no run record); returns
        what was removed. Only call while holding the lock."""
        removed = []
        if self._file:
            own = Path(self._file)
            mine = re.compile(rf"^\.{re.escape(own.stem)}\.\d+-[0-9a-f]+\.tmp{re.escape(own.suffix)}$"
                              rf"|^\.?{re.escape(own.name)}\.tmp\d*$")
            candidates = [p for p in self.out.iterdir() if p.is_file() and mine.match(p.name)]
        elif self.record_info:
            candidates = [p for p in self.out.rglob("*") if p.is_file() and is_temporary(p.name)]
        else:  # a folder of outputs among the user's own files (a data set): only inside the outputs
            candidates = [p for name in self.outputs if (self.out / name).is_dir()
                          for p in (self.out / name).rglob("*") if p.is_file() and is_temporary(p.name)]
        for path in candidates:
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass
        if removed:
            log.info("removed %d temporary file(s) of an interrupted run in %s", len(removed), self.label)
        return removed

    # ------------------------------------------------------------------------------------ run.json
    def _write_info(self, status: str, **extra: Any) -> None:
        if not self.record_info:
            return
        previous = self.previous if self.resumed else None
        info = {**self.info, "status": status, "fingerprint": self.fingerprint,
                "started": (previous or {}).get("started") or datetime.datetime.now().isoformat(timespec="seconds"),
                "pid": os.getpid(), "host": socket.gethostname(), **extra}
        if status == "complete":
            info["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
        write_json_atomic(self.info_path, info)

    def complete(self, **extra: Any) -> None:
        """Marks the run finished in its ``run.json`` (with ``extra`` entries, e.g. the final step)."""
        self._write_info("complete", **extra)


__all__ = ["VOLATILE_FIELDS", "HashConfig", "RunError", "RunLockedError", "FileLock", "RunDirectory",
           "check_output_is_not_input", "check_writable", "describe_mismatch", "distillkit_version", "fingerprint_key", "is_temporary",
           "run_fingerprint", "scene_content_hash", "strip_volatile", "DATASET_HASH"]
