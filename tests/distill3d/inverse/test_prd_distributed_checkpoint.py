"""The sharded checkpoint PRD's and the field's distributed trainers write (distillcore.sharded_checkpoint):
a step saved again, on another rank count, and killed before its manifest is written, must leave the
previous complete checkpoint readable as it was (a finished PRD run saves its last step twice, and a
run resumed there on another rank count saves it once more).

The ranks of a save are played one after the other in this process (rank 0 last: it writes the manifest
after the barrier), so a kill between a rank's shard and the manifest can be placed exactly.
"""
import json

import pytest
import torch

from distillcore import dist
from distillcore import sharded_checkpoint as sc

ROWS = torch.arange(10.0)[:, None] * torch.tensor([[1.0, -1.0]])  # [10, 2] rows, each one distinct


def _save(monkeypatch, root, step: int, world_size: int, kill_before_manifest: bool = False) -> None:
    """The collective save of ``ROWS`` by ``world_size`` ranks (rank 0 last); optionally killed after every
    shard is written, before rank 0 writes the manifest."""
    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed before the manifest")

    write_manifest = sc.write_json_atomic
    monkeypatch.setattr(dist, "barrier", lambda: None)
    bounds = dist.shard_bounds(ROWS.shape[0], world_size)
    for rank in reversed(range(world_size)):
        monkeypatch.setattr(dist, "context", lambda r=rank: dist.DistContext(r, world_size, r, torch.device("cpu"), "gloo"))
        monkeypatch.setattr(sc, "write_json_atomic", killed if kill_before_manifest else write_manifest)
        try:
            sc.save_sharded_checkpoint(root, step, {"rows": ROWS[bounds[rank]:bounds[rank + 1]]},
                                       {"step": step, "world_size": world_size})
        except KeyboardInterrupt:
            assert kill_before_manifest and rank == 0
    monkeypatch.undo()


def _load(root) -> tuple[torch.Tensor, dict]:
    shards, common = sc.load_sharded_checkpoint(root / sc.MANIFEST)
    return torch.cat([s["rows"] for s in shards]), common


@pytest.mark.parametrize("first,again", [(2, 1), (1, 2), (2, 2), (3, 2)])
def test_step_saved_again_and_killed_keeps_the_previous_checkpoint(tmp_path, monkeypatch, first, again):
    _save(monkeypatch, tmp_path, 6, first)
    _save(monkeypatch, tmp_path, 6, again, kill_before_manifest=True)
    rows, common = _load(tmp_path)
    assert torch.equal(rows, ROWS)  # before the fix: 2 -> 1 ranks joined 15 rows, 1 -> 2 ranks 5
    assert common["world_size"] == first


@pytest.mark.parametrize("first,again", [(2, 1), (1, 3)])
def test_step_saved_again_replaces_the_checkpoint_and_its_folder(tmp_path, monkeypatch, first, again):
    _save(monkeypatch, tmp_path, 6, first)
    for repeat in range(3):  # the folder alternates; the one the manifest named is removed after each save
        _save(monkeypatch, tmp_path, 6, again)
        rows, common = _load(tmp_path)
        assert torch.equal(rows, ROWS) and common["world_size"] == again
        manifest = json.loads((tmp_path / sc.MANIFEST).read_text())
        assert [p.name for p in tmp_path.glob("step_*")] == [manifest["folder"]]
        assert sorted(p.name for p in (tmp_path / manifest["folder"]).iterdir()) == (
            ["common.pt"] + [f"shard_{r:04d}.pt" for r in range(again)])
    _save(monkeypatch, tmp_path, 8, again)  # a later step goes to its own folder, as before
    assert json.loads((tmp_path / sc.MANIFEST).read_text())["folder"] == "step_00000008"
    assert torch.equal(_load(tmp_path)[0], ROWS)


@pytest.mark.parametrize("world_size", [0, -1, "2", None, True])
def test_manifest_with_a_bad_rank_count_is_one_clear_error(tmp_path, monkeypatch, world_size):
    _save(monkeypatch, tmp_path, 6, 2)
    manifest = json.loads((tmp_path / sc.MANIFEST).read_text())
    (tmp_path / sc.MANIFEST).write_text(json.dumps({**manifest, "world_size": world_size}))
    with pytest.raises(ValueError, match="does not name a complete sharded checkpoint"):
        sc.load_sharded_checkpoint(tmp_path / sc.MANIFEST)
