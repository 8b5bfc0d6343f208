"""Divergence (issue 21, item 10): a non-finite loss or parameter stops training with one line naming the
step, the last good checkpoint is left as it was, and the message says what to try; huge Gaussians
render the same on every CPU backend."""
import hashlib
import math
import pathlib
import sys

import pytest
import torch

TESTS = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "distill3d" / "fields"))
from f3dgs_tiny_scene import tiny_scene  # noqa: E402

from distillcore.divergence import TrainingDiverged, check_finite  # noqa: E402
from distillcore.serialization import load_state  # noqa: E402


def _digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_check_finite_names_step_cause_checkpoint_and_hint(tmp_path):
    check_finite(3, torch.tensor(0.5), {"w": torch.ones(3)})  # finite: nothing happens
    ckpt = tmp_path / "checkpoint.pt"
    with pytest.raises(TrainingDiverged) as err:
        check_finite(7, torch.tensor(float("nan")), checkpoint=ckpt)
    assert str(err.value) == (f"training diverged at step 7: the loss is nan; no checkpoint was written before it "
                              f"({ckpt} does not exist); lower the learning rate")
    ckpt.write_bytes(b"x")
    with pytest.raises(TrainingDiverged, match=r"step 9: w has 2 non-finite values; the last good checkpoint "
                                               r"\(step 5\) is kept at .*checkpoint.pt; lower the learning rate"):
        check_finite(9, parameters={"w": torch.tensor([1.0, math.inf, -math.nan])}, checkpoint=ckpt, checkpoint_step=5)
    with pytest.raises(TrainingDiverged, match="the kd is inf"):
        check_finite(1, {"det": 0.3, "kd": float("inf")})
    assert issubclass(TrainingDiverged, ValueError)  # the console reports it as one error line, exit 2


def _tiny_trainer(tmp_path):
    from distill3d.fields.config import InitConfig, TrainConfig
    from distill3d.fields.trainer import Trainer

    train, test, maps = tiny_scene(num_train=3, num_test=1, size=16)
    cfg = TrainConfig(steps=40, sh_degree=0, eval_every=0, checkpoint_every=2, backend="torch",
                      init=InitConfig(method="random", num_points=60, random_radius=0.25))
    return Trainer(train, cfg, tmp_path, maps, test)


def test_feature_field_divergence_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    trainer = _tiny_trainer(tmp_path)
    trainer.train(progress=False, until=4)
    saved = _digest(trainer.checkpoint_path)
    for optimizer in trainer.optimizers.values():  # learning rates x 1e5: log-scales overflow exp within steps
        optimizer.param_groups[0]["lr"] *= 1e5
    with pytest.raises(TrainingDiverged) as err:
        trainer.train(progress=False)
    message = str(err.value)
    step = int(message.split("diverged at step ")[1].split(":")[0])
    assert 4 < step < 40 and step == trainer.step + 1
    assert "last good checkpoint (step 4) is kept at" in message and "lower the learning rate" in message
    assert "\n" not in message
    assert _digest(trainer.checkpoint_path) == saved  # not replaced by a NaN state
    # and the kept checkpoint is a good one: it resumes to finite parameters
    fresh = _tiny_trainer(tmp_path)
    assert fresh.resume() == 4
    assert all(torch.isfinite(p).all() for p in fresh.field.splats.values())


def test_injected_nan_loss_is_caught_before_backward(tmp_path, monkeypatch):
    import distill3d.fields.trainer as trainer_module

    trainer = _tiny_trainer(tmp_path)
    before = {k: p.detach().clone() for k, p in trainer.field.splats.items()}
    monkeypatch.setattr(trainer_module, "image_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(TrainingDiverged, match=r"diverged at step 1: the loss is nan; no checkpoint"):
        trainer.train(progress=False)
    # nothing was stepped with the NaN gradient, and nothing was written
    assert all(torch.equal(before[k], p.detach()) for k, p in trainer.field.splats.items())
    assert not trainer.checkpoint_path.exists()


def test_vqgraph_fit_stops_on_nan_loss_and_keeps_its_checkpoint(tmp_path):
    from graphdistill.vqgraph.config import TrainConfig
    from graphdistill.vqgraph.fit import fit

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = iter([0.5, 0.4, 0.3, float("nan")])
    ckpt = tmp_path / "teacher.ckpt"
    with pytest.raises(TrainingDiverged, match=r"step 4: the loss is nan; the last good checkpoint is kept at"):
        fit(model, optimizer, lambda: next(losses), lambda: (0.5, 0.1),
            TrainConfig(epochs=10, checkpoint_every=2), checkpoint=ckpt, progress=False)
    assert load_state(ckpt)["epoch"] == 2


def test_mirage_training_divergence_is_one_error():
    from torch_geometric.data import Data

    from graphdistill.mirage.models import FeatureSpec, ModelConfig
    from graphdistill.mirage.train import TrainConfig, train_gnn

    g = torch.Generator().manual_seed(0)

    def graph(label):
        x = torch.randn(4, 3, generator=g) * 1e20  # float32 logits overflow at once
        return Data(x=x, edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]]), y=torch.tensor([label]))

    graphs = [graph(i % 2) for i in range(8)]
    with pytest.raises(TrainingDiverged, match=r"diverged at step 1: the loss is (nan|inf).*--lr"):
        train_gnn(graphs, None, graphs, [], FeatureSpec(None, 3), 2, ModelConfig(hidden=8, num_layers=1),
                  TrainConfig(epochs=2, samples_per_epoch=8, batch_size=4, lr=1e30))


def test_huge_scales_render_alike_on_every_cpu_backend():
    from distill3d.render import rasterize
    from distill3d.render.rasterize import available_backends

    args = (torch.tensor([[0.0, 0, 3], [0.2, 0, 3]]), torch.tensor([[1.0, 0, 0, 0], [0.9, 0.1, 0.2, 0.3]]),
            torch.tensor([[1e8, 1e8, 1e8], [0.1, 0.1, 0.1]]), torch.tensor([0.5, 0.9]),
            torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), torch.eye(4)[None],
            torch.tensor([[[175.0, 0, 16], [0, 175, 16], [0, 0, 1]]]), 32, 32)
    outputs = {b: rasterize(*args, backend=b) for b in available_backends("cpu")}
    # the 10^8-wide splat (2D variance ~3e19 px^2: det and radius overflow float32 / int32) is culled by
    # every backend, where the native one used to fail on non-finite conics; the small one renders alone
    alone = rasterize(*(a[1:] for a in args[:5]), *args[5:], backend="torch")[0]
    for backend, (image, _, _, meta) in outputs.items():
        assert meta["radii"][0, 0].tolist() == [0, 0] and meta["radii"][0, 1, 0] > 0, backend
        torch.testing.assert_close(image, alone, atol=1e-5, rtol=1e-5, msg=f"backend {backend}")
