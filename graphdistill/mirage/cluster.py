"""Where Mirage's map-reduce runs: shards in this process, Ray workers on this machine, or a Ray cluster.

:func:`open_executor` yields an executor over the shards (:mod:`graphdistill.mirage.shards`):

- ``workers=0`` and no address: :class:`~graphdistill.mirage.shards.LocalExecutor`, every shard in this
  process one after the other (the serial path; Ray is not imported);
- ``workers=N``: a private local Ray instance with ``N`` CPUs (``address="local"``, so a Ray cluster
  that happens to run on the machine is not joined), no dashboard, its session files in a new folder
  under ``/tmp`` (Unix socket paths must stay short), shut down and removed afterwards;
- ``address="HOST:PORT"``: an existing cluster. The address is probed with a TCP connection first, so
  an address that does not answer fails within ``connect_timeout`` seconds with one line instead of
  Ray's own retry loop (which does not end on a port that accepts connections but is not Ray's: that
  case fails after a second ``connect_timeout``).

On Ray every shard is one actor (:class:`RayExecutor`) holding its arrays, which reach it through
the object store (zero-copy numpy), and FP-growth runs as one task per (task, class).
"""
from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from distillcore.extras import require_extra

from .shards import LocalExecutor, ShardWorker


@dataclass
class ClusterConfig:
    """Processes that hash and mine (the distilled file does not depend on them)."""

    workers: int = 0  # Ray worker processes started on this machine (0: no Ray, all shards in this process)
    address: str | None = None  # HOST:PORT of a running Ray cluster (`ray start --head` prints it) instead
    shards: int | None = None  # graph shards (default: one per worker, one per cluster CPU with --address, else 1)
    connect_timeout: float = 30.0  # seconds --address may take to accept a connection, then to answer as Ray

    def validate(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"workers must be an integer >= 0, got {self.workers!r}")
        cores = os.cpu_count() or 1
        if self.address is None and self.workers > cores:
            # CPU-bound hashing gains nothing past one worker per core, and Ray starting hundreds of local
            # workers thrashes (1000 on 2 cores: workers crash and lost objects are recomputed without end)
            raise ValueError(f"workers={self.workers} on a machine with {cores} CPUs: at most {cores} local Ray "
                             "workers; for more, start a Ray cluster and pass --address")
        if self.shards is not None and (isinstance(self.shards, bool) or not isinstance(self.shards, int) or self.shards < 1):
            raise ValueError(f"shards must be an integer >= 1, got {self.shards!r}")
        if self.connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be > 0 seconds, got {self.connect_timeout}")
        if self.address is not None:
            parse_address(self.address)

    @property
    def uses_ray(self) -> bool:
        return self.workers > 0 or self.address is not None


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); anything else raises ``ValueError``."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a Ray address must be HOST:PORT (e.g. 10.0.0.5:6379), got {address!r}")
    return host, int(port)


def check_reachable(address: str, timeout: float) -> None:
    """Raises ``ValueError`` (one line) when nothing accepts a TCP connection at ``address`` within ``timeout`` s."""
    host, port = parse_address(address)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        raise ValueError(
            f"Ray cluster at {address} does not answer within {timeout:g} s ({err.strerror or type(err).__name__}): "
            f"start one there with `ray start --head --port {port}`, or drop --address to start Ray on this machine"
        ) from None


def _stop_processes_of(session_dir: str, grace: float = 3.0) -> None:
    """Stops the processes a failed local ``ray.init`` left running (GCS, dashboard, monitor, agents): Ray
    keeps no handle to them then. They are found by this run's own session folder (a fresh ``mkdtemp`` name)
    in their command line, so no other Ray instance on the machine is touched. Linux ``/proc`` only."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if session_dir in (entry / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(entry.name))
        except OSError:  # exited meanwhile, or not ours to read
            continue
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in alive if _running(pid)]
            time.sleep(0.1)
        pids = alive


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; its parent (this process) reaps it


class _NotRay(ValueError):
    """Something listens at the address but does not answer as a Ray cluster."""


def _init_within(ray, timeout: float, **kwargs) -> None:
    """``ray.init(**kwargs)`` bounded by ``timeout`` seconds: Ray retries a port that accepts connections but
    is not a Ray GCS for minutes, so the call runs in a daemon thread that is abandoned on timeout."""
    outcome: dict = {}

    def connect() -> None:
        try:
            ray.init(**kwargs)
        except BaseException as err:  # handed to the caller's thread
            outcome["error"] = err

    thread = threading.Thread(target=connect, name="ray-init", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise _NotRay(f"Ray cluster at {kwargs['address']} accepted a connection but did not answer as a Ray cluster "
                      f"within {timeout:g} s: is HOST:PORT the head's GCS address (`ray start --head` prints it)?")
    if "error" in outcome:
        raise outcome["error"]


class RayExecutor:
    """One Ray actor per shard; independent tasks as Ray tasks."""

    remote = True

    def __init__(self, ray, shards: list[dict], cpus_per_shard: float):
        self.ray = ray
        actor = ray.remote(ShardWorker).options(num_cpus=cpus_per_shard)
        # one torch thread per actor: its share of the CPUs is what the scheduler gave it
        self.workers = [actor.remote(**{k: ray.put(v) for k, v in s.items()}, threads=1) for s in shards]

    @property
    def num_shards(self) -> int:
        return len(self.workers)

    def map(self, method: str, args: list[tuple] | None = None) -> list:
        args = args if args is not None else [()] * len(self.workers)
        return self.ray.get([w.call.remote(method, *a) for w, a in zip(self.workers, args, strict=True)])

    def tasks(self, fn: Callable, args: list[tuple]) -> list:
        # on the shard actors, round robin: they hold the CPUs Ray was given, so a separate Ray task asking
        # for one would wait for ever (and each new worker process spends seconds importing)
        workers = itertools.cycle(self.workers)
        return self.ray.get([next(workers).call.remote("run_task", fn, *a) for a in args])

    def close(self) -> None:
        for w in self.workers:
            self.ray.kill(w)


@contextlib.contextmanager
def open_executor(make_shards: Callable[[int], list[dict]], cluster: ClusterConfig | None = None) -> Iterator:
    """An executor over ``make_shards(n)`` (the :class:`ShardWorker` arrays of ``n`` shards); see the module
    docstring for where it runs. Ray is started (or joined) here and shut down on exit."""
    cluster = cluster or ClusterConfig()
    cluster.validate()
    if not cluster.uses_ray:
        yield LocalExecutor([ShardWorker(**s) for s in make_shards(cluster.shards or 1)])
        return
    if cluster.address is not None:
        check_reachable(cluster.address, cluster.connect_timeout)
    ray = require_extra("ray", "dist")
    temp_dir = None if cluster.address is not None else tempfile.mkdtemp(prefix="gd-ray-", dir="/tmp")
    try:
        if cluster.address is not None:
            _init_within(ray, cluster.connect_timeout, address=cluster.address, log_to_driver=False, logging_level="ERROR")
        else:
            ray.init(address="local", num_cpus=cluster.workers, include_dashboard=False, _temp_dir=temp_dir,
                     log_to_driver=False, logging_level="ERROR")
    except _NotRay:
        raise
    except Exception as err:  # Ray raises bare Exception / ConnectionError / TimeoutError here
        ray.shutdown()
        if temp_dir is not None:
            _stop_processes_of(temp_dir)
            shutil.rmtree(temp_dir, ignore_errors=True)
        where = f"at {cluster.address}" if cluster.address else f"on this machine ({cluster.workers} workers)"
        raise RuntimeError(f"Ray did not start {where}: {str(err).splitlines()[0] if str(err) else type(err).__name__} "
                           "(an overloaded machine makes Ray's agents miss their 15 s startup limit; retry, or run "
                           "without --workers)") from err
    executor = None
    try:
        cpus = cluster.workers or int(ray.cluster_resources().get("CPU", 1))
        shards = make_shards(cluster.shards or cpus)
        # more shards than CPUs: fractional CPUs so that every actor is placed at once
        executor = RayExecutor(ray, shards, min(1.0, cpus / len(shards)))
        yield executor
    finally:
        if executor is not None:
            executor.close()
        ray.shutdown()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
