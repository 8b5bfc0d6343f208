"""The native extension's build cache: keyed by a hash of the kernel sources and flags, a stale lock left
by a killed build cleared with a warning, a live one waited on only up to a timeout, then a clear error.
Nothing is compiled here: the lock and key logic is tested on temporary folders."""
from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill3d.render import native
from distill3d.render.native import NativeBuildConfig, NativeBuildError, build_key, build_lock, snapshot_sources

HOLD_LOCK = """
import fcntl, os, sys, time
handle = open(sys.argv[1], "a+")
fcntl.flock(handle, fcntl.LOCK_EX)
handle.write(str(os.getpid())); handle.flush()
open(sys.argv[2], "w").close()  # torch's build lock, as a build in progress holds it
print("holding", flush=True)
time.sleep(120)
"""


def _holder(directory: Path) -> subprocess.Popen:
    """A process holding the build lock (and torch's lock file), as a build in progress does."""
    directory.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(directory / "build.lock"), str(directory / "lock")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_key_follows_sources_flags_and_kind(tmp_path):
    copy = tmp_path / "csrc"
    shutil.copytree(native.CSRC, copy, ignore=shutil.ignore_patterns("__pycache__"))
    key = build_key(False, csrc=copy)
    assert key == build_key(False) == build_key(False, csrc=copy)  # content, not location
    assert len(key) == 16 and int(key, 16) >= 0
    header = copy / "include" / "distill3d" / "common.h"
    header.write_text(header.read_text() + "\n// edited\n")
    assert build_key(False, csrc=copy) != key  # a header edit is a different extension
    assert build_key(False, NativeBuildConfig(cxx_flags=("-O2",))) != build_key(False)
    assert build_key(True) != build_key(False)


def test_build_directory_follows_torch_extensions_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert native.build_directory("distill3d_native_cpu_x") == tmp_path / "distill3d_native_cpu_x"


def test_stale_torch_lock_is_cleared_with_a_warning(tmp_path, caplog):
    """A build killed mid-way leaves torch's `lock` file (torch would wait on it forever)."""
    directory = tmp_path / "ext"
    directory.mkdir()
    (directory / "lock").touch()
    with caplog.at_level(logging.WARNING, logger=native.logger.name):
        with build_lock(directory, timeout_s=5.0):
            assert not (directory / "lock").exists()
            assert (directory / "build.lock").read_text() == str(__import__("os").getpid())
    assert len(caplog.records) == 1 and "stale build lock" in caplog.records[0].getMessage()


def test_a_killed_builder_releases_the_lock_at_once(tmp_path, caplog):
    directory = tmp_path / "ext"
    proc = _holder(directory)
    proc.kill()
    proc.wait()
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger=native.logger.name):
        with build_lock(directory, timeout_s=30.0):
            assert not (directory / "lock").exists()
    assert time.monotonic() - start < 5.0
    assert any("stale build lock" in r.getMessage() for r in caplog.records)


def test_waiting_on_a_live_builder_times_out_with_an_explanation(tmp_path):
    directory = tmp_path / "ext"
    proc = _holder(directory)
    try:
        start = time.monotonic()
        with pytest.raises(NativeBuildError, match=rf"waited 1 s for another process \(pid {proc.pid}\)"):
            with build_lock(directory, timeout_s=1.0):
                pytest.fail("acquired a lock another process holds")
        assert 0.9 < time.monotonic() - start < 5.0
        assert (directory / "lock").exists()  # a live build's lock is left alone
    finally:
        proc.kill()
        proc.wait()


def test_build_timeout_must_be_positive():
    with pytest.raises(ValueError, match="build_timeout_s must be > 0"):
        NativeBuildConfig(build_timeout_s=0)


def test_sources_are_snapshotted_once_and_checked_against_the_key(tmp_path, monkeypatch):
    config = NativeBuildConfig()
    key = build_key(False, config)
    snapshot = snapshot_sources(tmp_path / "a", key, False, config)
    assert build_key(False, config, snapshot) == key
    assert sorted(p.relative_to(snapshot) for p in snapshot.rglob("*.cpp")) == \
        sorted(p.relative_to(native.CSRC) for p in native.CSRC.rglob("*.cpp"))
    (snapshot / "marker").touch()
    assert snapshot_sources(tmp_path / "a", key, False, config) == snapshot and (snapshot / "marker").exists()
    # the sources changed after the key was taken: no build from a mismatched copy
    with pytest.raises(NativeBuildError, match="changed while the native build started"):
        snapshot_sources(tmp_path / "b", "0" * 16, False, config)
    assert not (tmp_path / "b" / "csrc").exists() and not (tmp_path / "b" / "csrc.partial").exists()


def test_a_finished_build_is_imported_without_ninja(monkeypatch):
    """Once built (the native tests need the build anyway), any process or venv imports the extension from
    its folder directly: torch's loader, whose ninja step rebuilds when torch's include paths differ
    between venvs, is not called again."""
    from torch.utils import cpp_extension

    if not native.native_available("cpu"):
        pytest.skip(f"the native backend does not build here: {native.native_build_error()}")
    key = build_key(False)
    directory = native.build_directory(f"distill3d_native_cpu_{key}")
    assert (directory / native.BUILT_MARKER).read_text() == key

    def no_build(*args, **kwargs):
        raise AssertionError("cpp_extension.load called for a finished build")

    monkeypatch.setattr(cpp_extension, "load", no_build)
    module = native._load.__wrapped__(False)
    assert Path(module.__file__).parent == directory and callable(module.rasterize_forward)
