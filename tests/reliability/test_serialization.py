"""distillcore.serialization: atomic writes that never leave a half file, strict JSON, and the toolkit's
real checkpoints holding only plain data (so they load under ``weights_only=True``)."""
import json
import math
import pathlib
import random
import sys
import threading

import numpy as np
import pytest
import torch
from torch import nn

TESTS = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "distill3d" / "fields"))
sys.path.insert(0, str(pathlib.Path(__file__).parent))
from f3dgs_tiny_scene import tiny_scene  # noqa: E402
from serialization_inputs import synthetic_scan, tiny_field_config  # noqa: E402

from distillcore.serialization import atomic_write, load_state, save_atomic, write_json_atomic  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PLAIN = (dict, list, tuple, str, int, float, bool, type(None), torch.Tensor)


def assert_plain(obj, where="checkpoint"):
    """Every value in ``obj`` is one the module's checkpoint format rule allows."""
    assert isinstance(obj, PLAIN), f"{where} holds a {type(obj).__module__}.{type(obj).__qualname__}"
    if isinstance(obj, dict):
        for key, value in obj.items():
            assert_plain(key, f"{where} key")
            assert_plain(value, f"{where}[{key!r}]")
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            assert_plain(value, f"{where}[{index}]")


def strict_json(path: pathlib.Path):
    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_round_trip_of_plain_data_under_weights_only(tmp_path):
    state = {"step": 3, "loss": float("-inf"), "name": "scene", "flags": (True, None), "big": 2 ** 127 + 1,
             "rng": random.Random(1).getstate(), "numpy_rng": np.random.default_rng(2).bit_generator.state,
             "weights": nn.Linear(2, 3).state_dict(), "history": [{"psnr": 30.5}]}
    path = save_atomic(state, tmp_path / "sub" / "state.pt")
    loaded = torch.load(path, weights_only=True)
    assert loaded["rng"] == state["rng"] and loaded["numpy_rng"] == state["numpy_rng"]
    assert loaded["big"] == state["big"] and loaded["flags"] == (True, None) and loaded["loss"] == -math.inf
    assert all(torch.equal(loaded["weights"][k], v) for k, v in state["weights"].items())
    assert load_state(path)["history"] == state["history"]
    random.Random().setstate(loaded["rng"])  # usable as RNG states again
    np.random.default_rng().bit_generator.state = loaded["numpy_rng"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.pt"]


def test_an_interrupted_write_keeps_the_previous_file_and_no_temporary(tmp_path):
    path = save_atomic({"version": 1}, tmp_path / "checkpoint.pt")
    with pytest.raises(Exception):  # torch.save fails part-way: a lambda cannot be pickled
        save_atomic({"version": 2, "weights": torch.zeros(1000), "bad": lambda: None}, path)

    def partial_then_interrupt(tmp):
        tmp.write_bytes(b"half a file")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, partial_then_interrupt)
    assert load_state(path) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_concurrent_writers_of_one_file_never_mix(tmp_path):
    """Writers in one process share the pid: the random suffix keeps their temporary files apart."""
    path = tmp_path / "shared.pt"
    errors = []

    def writer(value):
        try:
            for _ in range(15):
                save_atomic({"value": torch.full((20_000,), float(value))}, path)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(v,)) for v in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    values = load_state(path)["value"]
    assert values.unique().numel() == 1 and float(values[0]) in (1.0, 2.0, 3.0)
    assert [p.name for p in tmp_path.iterdir()] == ["shared.pt"]


def test_json_never_holds_infinity_or_nan(tmp_path):
    from distill3d.fields.metrics import psnr

    black = torch.zeros(3, 4, 4)  # an all-black render of an all-black view: infinite PSNR
    path = write_json_atomic(tmp_path / "metrics.json", {
        "psnr": psnr(black, black), "ssim": float("nan"), "history": [{"psnr": -math.inf}, {"psnr": 31.25}],
        "iou": np.float32(0.5), "count": np.int64(7), "scale": torch.tensor(2.0), "pair": (1, 2), "ok": True})
    assert strict_json(path) == {"psnr": None, "ssim": None, "history": [{"psnr": None}, {"psnr": 31.25}],
                                 "iou": 0.5, "count": 7, "scale": 2.0, "pair": [1, 2], "ok": True}
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists() and len(list(tmp_path.iterdir())) == 1


def test_field_trainer_checkpoint_is_plain_and_resumes(tmp_path):
    from distill3d.fields.trainer import Trainer

    train, _, maps = tiny_scene(num_train=2, num_test=1, size=16)
    trainer = Trainer(train, tiny_field_config(3, decoder_low_dim=2), tmp_path, maps)
    trainer.train(progress=False)
    state = torch.load(trainer.checkpoint_path, weights_only=True)
    assert_plain(state)
    assert state["step"] == 3
    resumed = Trainer(train, tiny_field_config(3, decoder_low_dim=2), tmp_path, maps)
    assert resumed.resume() == 3
    assert all(torch.equal(a, b) for a, b in zip(trainer.field.state_dict().values(),
                                                   resumed.field.state_dict().values()))
    ply = trainer.field.save(tmp_path / "point_cloud.ply")  # the decoder file beside it is plain too
    assert_plain(torch.load(ply.with_suffix(".decoder.pt"), weights_only=True))


def test_points_and_vqgraph_checkpoints_are_plain(tmp_path, monkeypatch):
    from distill3d.points.train import TrainConfig, build_detector, load_checkpoint, train_detector
    from graphdistill.vqgraph import fit as fit_module
    from graphdistill.vqgraph.config import TrainConfig as FitConfig

    scans = [synthetic_scan()]
    path = tmp_path / "detector.pt"
    train_detector(build_detector("pillars", 2, 0.25), scans, TrainConfig(steps=1, batch_size=1), path,
                   meta={"class_names": ("Car", "Pedestrian"), "iou_thresholds": (0.7, 0.5)}, progress=False)
    assert_plain(torch.load(path, weights_only=True))
    assert load_checkpoint(path)[1]["step"] == 1

    saved = []

    def save_and_read_back(obj, p):  # fit removes its checkpoint when done: check each one as written
        save_atomic(obj, p)
        saved.append(torch.load(p, weights_only=True))

    monkeypatch.setattr(fit_module, "save_atomic", save_and_read_back)
    model = nn.Linear(2, 2)
    fit_module.fit(model, torch.optim.Adam(model.parameters()), lambda: 0.0, lambda: (0.5, 1.0),
                   FitConfig(epochs=2, eval_every=1, checkpoint_every=1), checkpoint=tmp_path / "t.ckpt", progress=False)
    assert [s["epoch"] for s in saved] == [1, 2]
    for state in saved:
        assert_plain(state)
    random.Random().setstate(saved[-1]["python_rng"])
