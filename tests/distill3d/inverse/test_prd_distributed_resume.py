"""Resuming a single-process PRD run on ranks (`inverse train --resume --nproc N` / `--views-per-rank V`):
its checkpoint.pt is not sharded, so the sharded trainer cannot continue it. Before the check, the sharded
path took the run folder (same fingerprint), started over (a new radiance pre-training entry, every stage
again) and replaced the run's checkpoint.pt and metrics; now it is one clear error (exit code 2 from the
CLI) and the run is left as it was."""
import dataclasses
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_prd_training import tiny_config  # noqa: E402

from distillcore.runs import RunDirectory, run_fingerprint  # noqa: E402
from distill3d.data import default_scene_dir, resolve_scene_dir  # noqa: E402
from distill3d.inverse.pipeline import train_prd  # noqa: E402

DOWNSAMPLE = 8


def _single_process_run(out: Path, config) -> bytes:
    """The run folder a finished single-process `train_prd` leaves (its guard, fingerprint and checkpoint.pt,
    no checkpoint_dist/), written without training; returns the checkpoint's bytes."""
    scene = resolve_scene_dir(default_scene_dir())
    fingerprint = run_fingerprint(scene=scene, config=config.to_dict(), downsample=DOWNSAMPLE)
    info = {"scene": str(scene.resolve()), "downsample": DOWNSAMPLE, "data": dataclasses.asdict(config.radiance.data)}
    with RunDirectory(out, fingerprint=fingerprint, markers=("checkpoint.pt",),
                      outputs=("metrics.json", "export", "radiance", "relit"), info=info) as run:
        torch.save({"scene": scene.name, "stage_index": len(config.stages)}, out / "checkpoint.pt")
        run.complete()
    return (out / "checkpoint.pt").read_bytes()


@pytest.mark.parametrize("nproc,views_per_rank", [(2, 1), (1, 2)])
def test_resuming_a_single_process_run_on_ranks_is_refused(tmp_path, nproc, views_per_rank):
    config = tiny_config(4, (1, 1, 1))
    config.radiance.backend = "torch"
    out, cache = tmp_path / "run", tmp_path / "cache"
    before = _single_process_run(out, config)
    with pytest.raises(ValueError, match="holds a single-process PRD run .* resume it without --nproc") as raised:
        train_prd(default_scene_dir(), config, out, downsample=DOWNSAMPLE, resume=True, progress=False,
                  radiance_cache=cache, nproc=nproc, views_per_rank=views_per_rank)
    assert "\n" not in str(raised.value)
    assert (out / "checkpoint.pt").read_bytes() == before  # before the check: replaced by a run started over
    assert not (out / "checkpoint_dist").exists() and not cache.exists()
