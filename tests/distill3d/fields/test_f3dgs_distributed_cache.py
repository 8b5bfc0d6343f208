"""Teacher feature extraction shared by the ranks of a sharded field run, into the one feature cache.

Each rank of a process group computes every ``R``-th view (``distill3d.teachers.FeatureCache.encode_all``);
the cache files must be those one process writes (same names, same tensors), every view must be
extracted exactly once over all ranks (teacher calls counted by the image each one saw), and a filled
cache must be reused by a run on any number of ranks. The small pretrained ``xfeat`` teacher ships in
its package: nothing downloads.
"""
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import shrunk_scene_copy  # noqa: E402

from distillcore import dist  # noqa: E402
from distillcore.serialization import load_state  # noqa: E402
from distill3d.fields.config import InitConfig, TrainConfig  # noqa: E402
from distill3d.fields.field import FeatureField  # noqa: E402
from distill3d.fields.pipeline import prepare_scene  # noqa: E402
from distill3d.teachers import base  # noqa: E402
from distill3d.teachers.cache import image_digest  # noqa: E402

VIEWS = 5  # odd: the ranks' shares differ in size


def _config() -> TrainConfig:
    return TrainConfig(teacher="xfeat", steps=2, sh_degree=0, eval_every=0, checkpoint_every=0, backend="torch",
                       init=InitConfig(method="random", num_points=200))


def _count_teacher_calls(patch) -> list[str]:
    """Records the content hash of every image a teacher encodes (``patch(obj, name, value)`` sets it)."""
    calls: list[str] = []
    forward = base.Teacher.forward

    def counted(self, image):
        calls.append(image_digest(image))
        return forward(self, image)

    patch(base.Teacher, "forward", counted)
    return calls


def _cache_files(root: Path) -> dict[str, torch.Tensor]:
    return {str(p.relative_to(root)): load_state(p, what="cache entry") for p in sorted(root.rglob("*.pt"))}


def _torchrun_rank(scene: str, cache: str, out: str) -> dict:
    """One rank of a torchrun job (``dist.launch`` sets torchrun's environment): the command's own path,
    ``train_field_sharded`` joining the job; then the same scene prepared again on the filled cache."""
    from distill3d.fields.distributed import train_field_sharded

    calls = _count_teacher_calls(lambda obj, name, value: setattr(obj, name, value))
    metrics = train_field_sharded(scene, _config(), out, cache, progress=False, timeout_s=120)
    first = list(calls)
    prepare_scene(scene, "xfeat", cache, progress=False)
    return dist.gather_objects({"calls": first, "calls_again": calls[len(first):], "metrics": metrics})


def test_two_ranks_share_the_extraction_into_the_one_rank_cache(tmp_path, monkeypatch, one_torch_thread):
    scene = shrunk_scene_copy(tmp_path / "scene", views=VIEWS, shrink=4)
    ranks = dist.launch(_torchrun_rank, 2, str(scene), str(tmp_path / "two"), str(tmp_path / "out"), timeout_s=300)

    # the reference: one process fills its own cache
    calls = _count_teacher_calls(monkeypatch.setattr)
    one = prepare_scene(scene, "xfeat", tmp_path / "one", progress=False)
    assert len(calls) == VIEWS and len(set(calls)) == VIEWS
    # every view exactly once over the ranks: rank r encoded views r, r + 2, ...
    assert sorted(ranks[0]["calls"] + ranks[1]["calls"]) == sorted(calls)
    assert [len(r["calls"]) for r in ranks] == [3, 2]
    assert ranks[0]["calls"] == calls[0::2] and ranks[1]["calls"] == calls[1::2]
    # the same files, names (cache keys) and tensors as one process writes
    two, reference = _cache_files(tmp_path / "two"), _cache_files(tmp_path / "one")
    assert list(two) == list(reference) and len(two) == VIEWS
    for name, features in reference.items():
        torch.testing.assert_close(two[name], features, rtol=0, atol=1e-6)
    assert not list((tmp_path / "two").rglob("*.tmp*"))  # atomic writes: no temporaries left
    # the filled cache is reused: on 2 ranks, and by 1 rank
    assert ranks[0]["calls_again"] == [] and ranks[1]["calls_again"] == []
    again = prepare_scene(scene, "xfeat", tmp_path / "two", progress=False)
    assert len(calls) == VIEWS
    for name, features in one.teacher_maps.items():
        torch.testing.assert_close(again.teacher_maps[name], features, rtol=0, atol=1e-6)
    # the ranks trained on those maps (feature channels of xfeat's width) and wrote the run
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["ranks"] == 2 and metrics["step"] == 2 and metrics["teacher"] == "xfeat"
    field = FeatureField.load(tmp_path / "out" / "point_cloud.ply")
    assert field.num_gaussians == metrics["num_gaussians"] and field.feature_dim == 64


@pytest.mark.slow
def test_spawned_ranks_extract_not_the_launching_process(tmp_path, monkeypatch):
    """``--nproc 2``: the launching process reads the scene only; the spawned ranks build the teacher and
    fill the cache (a teacher built here would raise)."""
    from distill3d.fields import pipeline
    from distill3d.fields.distributed import train_field_sharded

    scene = shrunk_scene_copy(tmp_path / "scene", views=VIEWS, shrink=4)

    def refuse(*args, **kwargs):
        raise AssertionError("the launching process built a teacher")

    monkeypatch.setattr(pipeline, "build_teacher", refuse)
    metrics = train_field_sharded(scene, _config(), tmp_path / "out", tmp_path / "cache", progress=False, nproc=2,
                                  timeout_s=300)
    assert metrics["ranks"] == 2 and metrics["step"] == 2
    monkeypatch.undo()
    calls = _count_teacher_calls(monkeypatch.setattr)
    prepare_scene(scene, "xfeat", tmp_path / "cache", progress=False)
    assert calls == [] and len(list((tmp_path / "cache").rglob("*.pt"))) == VIEWS  # the ranks filled it all
    # resuming the finished run (on another rank count) reports it, as the single-process command does,
    # instead of re-timing zero steps on new ranks into its metrics.json
    from distillcore import dist

    monkeypatch.setattr(dist, "launch", lambda *a, **k: pytest.fail("a finished run was launched again"))
    again = train_field_sharded(scene, _config(), tmp_path / "out", tmp_path / "cache", progress=False, nproc=1,
                                resume=True)
    assert again == json.loads((tmp_path / "out" / "metrics.json").read_text()) and again["ranks"] == 2
