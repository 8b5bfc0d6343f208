"""distillcore.dist on 2 gloo ranks (CPU): collectives against a local reference, failure handling.

Spawning ranks dominates the cost (a fresh interpreter importing torch per rank), so each test runs
one launch and checks several things inside it.
"""
import os
import socket
import time

import pytest
import torch

from distillcore import dist


def _rows(src: int, dst: int, width: int) -> torch.Tensor:
    # a deterministic, distinct block for every (sender, receiver) pair; uneven row counts, one empty
    n = (src * 3 + dst * 2) % 4
    g = torch.Generator().manual_seed(100 * src + dst)
    return torch.randn(n, width, generator=g, dtype=torch.float64)


def _collectives(world: int, width: int):
    ctx = dist.context()
    me = ctx.rank
    # all_to_all_variable: values and gradients against the same algebra done locally
    inputs = [_rows(me, dst, width).requires_grad_() for dst in range(world)]
    out = dist.all_to_all_variable(inputs)
    values_ok = all(torch.equal(out[s], _rows(s, me, width)) for s in range(world))
    # loss on rank `me` weights what it received with (me + 1); the gradient of inputs[dst] is then (dst + 1) * 2 * x
    loss = sum(((me + 1) * o.pow(2)).sum() for o in out)
    loss.backward()
    grads_ok = all(torch.allclose(inputs[d].grad, (d + 1) * 2 * inputs[d].detach(), rtol=0, atol=0)
                   for d in range(world))
    # all_gather_variable: uneven first dims, in rank order
    gathered = dist.all_gather_variable(torch.full((me + 1, 2), float(me)))
    gather_ok = [tuple(t.shape) for t in gathered] == [(s + 1, 2) for s in range(world)] and all(
        bool((t == s).all()) for s, t in enumerate(gathered))
    summed = dist.all_reduce_sum(torch.tensor([float(me + 1)]))
    draws = torch.randint(0, 1000, (16,), generator=dist.rank_generator(7))
    all_draws = dist.gather_objects(draws.tolist())
    token = dist.broadcast_object({"from": me} if me == 0 else None)
    dist.barrier()
    return {"rank": me, "world": ctx.world_size, "backend": ctx.backend, "values": values_ok, "grads": grads_ok,
            "gather": gather_ok, "sum": float(summed), "draws": all_draws, "token": token}


def test_collectives_two_ranks_match_local_reference():
    out = dist.launch(_collectives, 2, 2, 3, timeout_s=60)
    assert out["world"] == 2 and out["backend"] == "gloo" and out["rank"] == 0
    assert out["values"] and out["grads"] and out["gather"]
    assert out["sum"] == 3.0
    assert out["draws"][0] == out["draws"][1]  # rank_generator: same stream on both ranks
    assert out["token"] == {"from": 0}


def test_cli_timeout_default_is_the_library_default():
    from distillcore.config_cli import DistOptions

    assert DistOptions().dist_timeout == dist.DEFAULT_TIMEOUT_S


def test_single_process_is_identity():
    # nproc == 1 runs in this process, without a process group: every collective is the identity
    out = dist.launch(_collectives, 1, 1, 3)
    assert out["world"] == 1 and out["backend"] == "none"
    assert out["values"] and out["grads"] and out["gather"] and out["sum"] == 1.0


def _raise_on_rank_one():
    if dist.context().rank == 1:
        raise ValueError("bad shard 1")
    dist.barrier()  # rank 0 waits for a peer that will never come: it must not hang
    return "unreachable"


# long enough that only a stopped job finishes the test in time; spawning is slow on a loaded machine
_STALL_S = 300


def _stall_rank_one():
    if dist.context().rank == 1:
        time.sleep(_STALL_S)
    dist.all_reduce_sum(torch.ones(1))
    return "unreachable"


def _kill_rank_one():
    if dist.context().rank == 1:
        os.kill(os.getpid(), 9)
    dist.barrier()


@pytest.mark.parametrize("program, rank, message", [
    (_raise_on_rank_one, 1, "ValueError: bad shard 1"),
    (_kill_rank_one, 1, "killed by signal SIGKILL"),
    # a peer that never joins the collective: rank 0's gloo timeout fires and the job stops
    (_stall_rank_one, 0, ""),
])
def test_failed_rank_stops_the_job_naming_it(program, rank, message):
    start = time.monotonic()
    with pytest.raises(dist.RankFailedError, match=f"rank {rank} failed: .*{message}") as info:
        dist.launch(program, 2, timeout_s=3)
    assert info.value.rank == rank
    assert time.monotonic() - start < _STALL_S * 0.8  # the stalled rank was stopped, not waited for


def test_bad_nproc_and_unreachable_rendezvous(monkeypatch):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="nproc must be a positive"):
            dist.launch(_collectives, bad, 1, 1)
    # a closed local port: the rendezvous cannot complete, the error names the address within the timeout
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=f"rank 1 could not join the job at 127.0.0.1:{port} within 2 s"):
        dist.init_from_env("cpu", timeout_s=2)
    assert time.monotonic() - start < 30
    assert not dist.context().distributed


def test_rank_failure_is_reported_in_one_line(capsys):
    err = dist.RankFailedError(1, "killed by signal SIGKILL")
    assert dist.report_rank_failure("distill3d train", err) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("distill3d train: error: rank 1 failed: killed by signal SIGKILL")


_ORPHAN_PROGRAM = '''
import os, sys, time
from distillcore import dist

def hold(folder):
    with open(os.path.join(folder, f"rank{dist.context().rank}.pid"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(300)

if __name__ == "__main__":
    dist.launch(hold, 2, sys.argv[1], timeout_s=60)
'''


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
def test_ranks_end_when_their_launcher_is_killed(tmp_path):
    """A kill -9 of the command leaves nobody to collect the ranks' work or hold the output's lock: the ranks
    must stop instead of writing on into the folder."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "orphans.py"
    script.write_text(_ORPHAN_PROGRAM)
    launcher = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    try:
        deadline = time.monotonic() + 240  # spawning is slow on a loaded machine
        while len(list(tmp_path.glob("rank*.pid"))) < 2 or any(p.stat().st_size == 0 for p in tmp_path.glob("rank*.pid")):
            assert launcher.poll() is None and time.monotonic() < deadline, "the ranks did not start"
            time.sleep(0.2)
        ranks = [int(p.read_text()) for p in tmp_path.glob("rank*.pid")]
        assert all(_alive(pid) for pid in ranks)
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        deadline = time.monotonic() + 30 * dist.LAUNCHER_CHECK_S
        while any(_alive(pid) for pid in ranks) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in ranks), "ranks outlived their launcher"
    finally:
        launcher.kill()
        for p in tmp_path.glob("rank*.pid"):
            if p.read_text() and _alive(int(p.read_text())):
                os.kill(int(p.read_text()), signal.SIGKILL)
