"""The toolkit's one thin layer over ``torch.distributed``: start ranks, move tensors between them.

Two ways a job starts, one code path after that:

- ``torchrun`` (one machine or several): torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR`` and ``MASTER_PORT`` in each process; :func:`init_from_env` joins that job.
- ``--nproc N`` on one machine: :func:`launch` starts ``N`` local processes
  (``torch.multiprocessing``'s forkserver: forked from a process that imported torch once), gives
  them the launcher's environment plus those variables with a free local port, and each joins
  through :func:`init_from_env`.

The backend follows the device: NCCL for CUDA ranks (one GPU per local rank), gloo for CPU ranks.
Without a process group every function here is the single-process identity (``world_size == 1``),
so trainers call them unconditionally.

Failure policy: no rank may wait forever. Every collective of the group carries ``timeout_s``
(gloo raises once a peer has not answered within it), and :func:`launch` stops all ranks as soon as
one raises or dies, then raises :class:`RankFailedError` naming that rank.

Random choices made on several ranks (densification, k-means initialisation, dead-code restarts,
sampling) draw from :func:`rank_generator`, whose stream is the same on every rank.
"""
from __future__ import annotations

import datetime
import os
import pickle
import queue as queue_module
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as tdist

# How long a rank waits for its peers at the rendezvous and in any one collective before it raises.
DEFAULT_TIMEOUT_S = 300.0
# modules the process that forks local ranks imports once (see launch)
FORKSERVER_PRELOAD = ["torch", "torch.distributed", "distillcore.dist"]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job.

    Args:
        rank: global rank, ``0 <= rank < world_size``.
        world_size: number of processes in the job (1 without a process group).
        local_rank: rank among the processes on this machine (selects the GPU).
        device: the device this rank computes on.
        backend: ``"gloo"``, ``"nccl"``, or ``"none"`` without a process group.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, shows progress bars and writes shared files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process takes part."""
        return self.world_size > 1


class RankFailedError(RuntimeError):
    """A rank of a :func:`launch` job raised or died; ``rank`` names it, the message says how."""

    def __init__(self, rank: int, message: str):
        super().__init__(f"rank {rank} failed: {message}")
        self.rank = rank


class RendezvousError(ValueError, RuntimeError):
    """This rank could not join the job (unreachable ``MASTER_ADDR:MASTER_PORT``, or peers that never came):
    a setting the user chose, so a ``ValueError`` (one error line and exit code 2 on the command line)."""


# The device chosen at init for this process (a process group does not record it).
_device: torch.device | None = None


def _initialized() -> bool:
    return tdist.is_available() and tdist.is_initialized()


def context() -> DistContext:
    """The current process's :class:`DistContext` (rank 0 of 1 when no process group is running)."""
    if not _initialized():
        return DistContext(0, 1, 0, _device or torch.device("cpu"), "none")
    return DistContext(tdist.get_rank(), tdist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)),
                       _device or torch.device("cpu"), str(tdist.get_backend()))


def is_main() -> bool:
    """True on rank 0 and in a single process: guard logging, progress bars and checkpoint writes."""
    return context().is_main


def in_torchrun_job() -> bool:
    """The environment describes a multi-process job (torchrun's, or one :func:`launch` started)."""
    return all(v in os.environ for v in _TORCHRUN_VARS) and int(os.environ["WORLD_SIZE"]) > 1


def init_from_env(device: str | torch.device | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> DistContext:
    """Joins the job described by torchrun's environment variables, or stays single-process.

    With ``RANK``, ``WORLD_SIZE`` (> 1), ``MASTER_ADDR`` and ``MASTER_PORT`` set, initialises the
    default process group (``env://`` rendezvous): NCCL when this rank computes on CUDA (GPU
    ``LOCAL_RANK``), gloo otherwise. Calling it again once joined returns the current context.

    Args:
        device: ``"cpu"``, ``"cuda"`` or a device; ``None`` picks CUDA when available. A bare
            ``"cuda"`` becomes ``cuda:LOCAL_RANK``.
        timeout_s: how long the rendezvous and every later collective may wait for the other ranks.

    Raises:
        RendezvousError: the rendezvous at ``MASTER_ADDR:MASTER_PORT`` did not complete within
            ``timeout_s`` (an unreachable address, or ranks that never arrived).
    """
    global _device
    if _initialized():
        return context()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    _device = dev
    if not in_torchrun_job():
        return context()
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    address = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    try:
        tdist.init_process_group(backend, init_method="env://", timeout=datetime.timedelta(seconds=timeout_s))
    except Exception as err:  # torch raises DistStoreError / RuntimeError / TimeoutError by version
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RendezvousError(f"rank {os.environ['RANK']} could not join the job at {address} within "
                           f"{timeout_s:g} s ({first})") from err
    return context()


def shutdown() -> None:
    """Leaves the process group (if any); single-process code is unaffected."""
    if _initialized():
        tdist.destroy_process_group()


def _free_port() -> int:
    # asks the OS for an unused port; the tiny window before rank 0 binds it is accepted (as torchrun does)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


LAUNCHER_CHECK_S = 1.0  # how often a spawned rank checks that its launcher still runs


def _exit_without_launcher(launcher_pid: int) -> None:
    """Ends this rank (exit code 1) once the command that launched it is gone: a ``kill -9`` of the command
    leaves nobody to collect the ranks' work or to hold the output folder's lock, so they must not go on
    writing into it. The forkserver the rank was forked from exits with the launcher, so a changed parent
    is the sign; the launcher's own pid is checked too."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(LAUNCHER_CHECK_S)
            try:
                os.kill(launcher_pid, 0)
            except (ProcessLookupError, PermissionError):  # gone, or its pid reused by another user's process
                os._exit(1)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="distillkit-launcher-watch", daemon=True).start()


def _spawned_rank(local_rank: int, fn: Callable, args: tuple, nproc: int, port: int, device: str | None,
                  timeout_s: float, threads: int, results, environment: dict[str, str], launcher_pid: int) -> None:
    _exit_without_launcher(launcher_pid)
    # a forkserver child starts with the server's environment, not the launcher's: take the launcher's
    os.environ.clear()
    os.environ.update(environment)
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(nproc),
                      LOCAL_WORLD_SIZE=str(nproc), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # ranks share the machine's cores: one pool of threads per rank would oversubscribe them
    torch.set_num_threads(threads)
    try:
        dev = device
        if dev is None and torch.cuda.is_available() and torch.cuda.device_count() >= nproc:
            dev = "cuda"
        init_from_env(dev or "cpu", timeout_s)
        out = fn(*args)
        if local_rank == 0:
            # plain pickle bytes: torch's queue would share tensors through this process's memory,
            # which is gone once it exits
            results.put(("ok", 0, pickle.dumps(out)))
    except BaseException as err:
        line = f"{type(err).__name__}: {err}".strip().splitlines()[0] if str(err).strip() else type(err).__name__
        # the time orders reports: the rank that failed first caused the others' errors
        results.put(("error", time.time(), local_rank, line, traceback.format_exc()))
        raise
    finally:
        shutdown()


def launch(fn: Callable, nproc: int, *args, timeout_s: float = DEFAULT_TIMEOUT_S,
           device: str | None = None, threads_per_rank: int | None = None) -> Any:
    """Runs ``fn(*args)`` on ``nproc`` ranks and returns rank 0's return value.

    - Under torchrun (see :func:`in_torchrun_job`): joins the job and runs ``fn`` in this process;
      the job's ``WORLD_SIZE`` decides the number of ranks and ``nproc`` is not used. Each process
      returns its own ``fn``'s value.
    - ``nproc == 1``: runs ``fn`` here, without a process group.
    - ``nproc > 1``: spawns ``nproc`` local processes on a free port of 127.0.0.1; each joins the
      group (:func:`init_from_env`) and runs ``fn``. ``fn`` and ``args`` must be picklable (a
      module-level function). If any rank raises or dies, the others are terminated at once.

    Args:
        fn: the per-rank program; it reads its rank from :func:`context`.
        nproc: number of local ranks (>= 1).
        *args: passed to ``fn`` on every rank.
        timeout_s: limit for the rendezvous and for each collective (a rank stuck waiting for a
            peer raises after it).
        device: ``"cpu"`` (gloo) or ``"cuda"`` (NCCL, GPU ``local_rank``); ``None`` picks CUDA when
            there are at least ``nproc`` GPUs.
        threads_per_rank: torch intra-op threads per spawned rank; default: cores // nproc.

    Raises:
        ValueError: ``nproc < 1``.
        RankFailedError: a rank raised (message: its exception's first line; the full traceback is
            in ``__cause__``) or exited abnormally (signal or exit code).
    """
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be a positive number of processes, got {nproc!r}")
    if in_torchrun_job() or _initialized():
        init_from_env(device, timeout_s)
        return fn(*args)
    if nproc == 1:
        return fn(*args)
    import torch.multiprocessing as mp

    threads = threads_per_rank or max(1, (os.cpu_count() or 1) // nproc)
    # ranks fork from a server process that imported torch once (the first launch starts it), instead of
    # each importing torch afresh as "spawn" does: 0.5-1 s per launch instead of about 20 s on a loaded
    # 2-core machine. The server is a clean process (no threads, no CUDA), so forking from it is safe.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(FORKSERVER_PRELOAD)
    results = ctx.Queue()
    procs = mp.start_processes(_spawned_rank, args=(fn, args, nproc, _free_port(), device, timeout_s, threads,
                                                    results, dict(os.environ), os.getpid()),
                               nprocs=nproc, join=False, start_method="forkserver")
    messages: list[tuple] = []

    def drain() -> None:
        # read while waiting: a queue's writer cannot exit before its data is read
        while True:
            try:
                messages.append(results.get_nowait())
            except queue_module.Empty:
                return

    failure: BaseException | None = None
    try:
        while True:
            drain()
            if procs.join(timeout=0.05):
                break
    except mp.ProcessRaisedException as err:
        failure = err
    except mp.ProcessExitedException as err:
        failure = err
    drain()
    errors = [m for m in messages if m[0] == "error"]
    # a rank killed by a signal we did not send (the OOM killer, a kill -9) cannot report; its peers then
    # fail in a collective ("connection reset"), so its death is the cause to name, whatever reached us first
    killed = [(i, p.exitcode) for i, p in enumerate(procs.processes)
              if p.exitcode is not None and p.exitcode < 0 and -p.exitcode != signal.SIGTERM]
    if killed:
        rank, code = killed[0]
        raise RankFailedError(rank, f"killed by signal {signal.Signals(-code).name}") from failure
    if failure is not None or errors:
        if errors:
            _, _, rank, line, trace = min(errors, key=lambda m: m[1])
            raise RankFailedError(rank, line) from RuntimeError(trace)
        rank = getattr(failure, "error_index", -1)
        code = getattr(failure, "exit_code", None)
        if code is not None and code < 0:
            how = f"killed by signal {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        raise RankFailedError(rank, how) from failure
    ok = [m for m in messages if m[0] == "ok"]
    return pickle.loads(ok[0][2]) if ok else None  # bytes from our own rank 0, not a user file


class _AllToAll(torch.autograd.Function):
    """``all_to_all_single`` with uneven splits; the backward sends gradients back along the reverse route."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor, send_counts: list[int], recv_counts: list[int]) -> torch.Tensor:
        ctx.send_counts, ctx.recv_counts = send_counts, recv_counts
        out = flat.new_empty((sum(recv_counts),) + tuple(flat.shape[1:]))
        tdist.all_to_all_single(out, flat.contiguous(), recv_counts, send_counts)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        back = grad.new_empty((sum(ctx.send_counts),) + tuple(grad.shape[1:]))
        tdist.all_to_all_single(back, grad.contiguous(), ctx.send_counts, ctx.recv_counts)
        return back, None, None


def exchange_counts(send_counts: list[int]) -> list[int]:
    """``send_counts[r]`` is what this rank sends to rank ``r``; returns what it receives from each rank."""
    ctx = context()
    if not ctx.distributed:
        return list(send_counts)
    send = torch.tensor(send_counts, dtype=torch.int64, device=ctx.device)
    recv = torch.empty_like(send)
    tdist.all_to_all_single(recv, send)
    return recv.tolist()


def all_to_all_variable(inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Sends ``inputs[r]`` to rank ``r``; returns the tensors received, ``out[s]`` from rank ``s``.

    Differentiable: the gradient of ``out[s]`` flows back to ``inputs[r]`` on rank ``s``. First
    dimensions may differ (and be 0); one ``all_to_all_single`` call moves all data after one small
    exchange of row counts.

    Args:
        inputs: ``world_size`` tensors with the same trailing shape and dtype on every rank.

    Shapes:
        inputs[r]: ``[n_r, *T]`` -> out[s]: ``[m_s, *T]`` with ``m_s`` the ``n`` rank ``s`` sent here.
    """
    ctx = context()
    if len(inputs) != ctx.world_size:
        raise ValueError(f"all_to_all_variable needs one tensor per rank ({ctx.world_size}), got {len(inputs)}")
    if not ctx.distributed:
        return list(inputs)
    trailing, dtype = tuple(inputs[0].shape[1:]), inputs[0].dtype
    for r, t in enumerate(inputs):
        if tuple(t.shape[1:]) != trailing or t.dtype != dtype:
            raise ValueError(f"all_to_all_variable: inputs[{r}] has shape {tuple(t.shape)} / {t.dtype}, "
                             f"expected [*, {', '.join(map(str, trailing))}] / {dtype}")
    send_counts = [int(t.shape[0]) for t in inputs]
    recv_counts = exchange_counts(send_counts)
    out = _AllToAll.apply(torch.cat(inputs), send_counts, recv_counts)
    return list(out.split(recv_counts))


def all_gather_variable(t: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``t``, in rank order; first dimensions may differ. Differentiable (the gradient of
    ``out[s]`` on every rank is summed into rank ``s``'s ``t``).

    Shapes:
        t: ``[n_rank, *T]`` (same ``T`` and dtype on every rank) -> ``world_size`` tensors ``[n_s, *T]``.
    """
    return all_to_all_variable([t] * context().world_size)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over ranks, as a new tensor (``t`` itself without a process group). Not
    differentiable: use it for statistics, metrics and gradient averaging after backward."""
    if not context().distributed:
        return t
    out = t.detach().clone()
    tdist.all_reduce(out)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (pickled in memory between our own processes)."""
    if not context().distributed:
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> list | None:
    """Every rank's ``obj`` in rank order on rank 0, ``None`` on the other ranks."""
    ctx = context()
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world_size if ctx.is_main else None
    tdist.gather_object(obj, out, dst=0)
    return out


def report_rank_failure(command: str, err: RankFailedError) -> int:
    """Prints the one line that sums up a failed job of ``command`` (the failed rank's traceback is on
    stderr above it) and returns the exit code, 1."""
    print(f"{command}: error: {err} (the last complete checkpoint is kept; --resume continues it)", file=sys.stderr)
    return 1


def shard_bounds(n: int, world_size: int) -> list[int]:
    """Start of each rank's contiguous shard of ``n`` items, plus ``n``: sizes differ by at most one."""
    return [r * n // world_size for r in range(world_size)] + [n]


def rank_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: called with the same seed on every rank (e.g. the run's seed
    plus the step), it yields the same stream everywhere, so random choices agree across ranks."""
    return torch.Generator().manual_seed(int(seed))


def barrier() -> None:
    """Waits until every rank reaches this call (nothing without a process group)."""
    if context().distributed:
        tdist.barrier()


__all__ = ["DEFAULT_TIMEOUT_S", "DistContext", "RankFailedError", "RendezvousError", "all_gather_variable",
           "all_reduce_sum",
           "all_to_all_variable", "barrier", "broadcast_object", "context", "exchange_counts", "gather_objects",
           "in_torchrun_job", "init_from_env", "is_main", "launch", "rank_generator", "report_rank_failure", "shard_bounds", "shutdown"]
