"""Detector training, distillation and evaluation on 2 gloo ranks against 1 process on the same global batch.

The 1-rank reference runs in the test process; :func:`distillcore.dist.launch` spawns the 2 ranks,
which return rank 0's weights (DDP keeps them equal on every rank) and rank 0's gathered results.
"""
import pytest
import torch

from distillcore import dist
from distillcore.cli import console
from distill3d.cli import main as cli_main
from distill3d.points.distill import DistillConfig
from distill3d.points.kitti import write_kitti_dataset
from distill3d.points.lidar import LidarConfig
from distill3d.points.simulate import SimulationConfig, simulate_dataset
from distill3d.points.train import TrainConfig, build_detector, load_checkpoint, predict, evaluate_detector, train_detector

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIM = SimulationConfig(lidar=LidarConfig(num_beams=16))
STEPS = 3
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def scans():
    return simulate_dataset(SIM, 6, seed=3)


def _train(scans, family: str, width: float, teacher_state, method: str | None, checkpoint):
    """Trains a fresh detector (seed 0) for ``STEPS`` steps of 4 scans; returns its weights.

    In float64: in float32 the summation order of 1 and 2 ranks differs in the last bits, and Adam,
    which divides each gradient by its own magnitude, turns that into steps of opposite sign wherever
    a gradient is close to 0 (a few hundred of 38k weights moved by about one learning rate after
    2 steps), which would hide a real difference as well as make one up."""
    teacher = None
    if teacher_state is not None:
        teacher = build_detector(family, 2, 1.0).double()
        teacher.load_state_dict(teacher_state)
    torch.manual_seed(0)
    model = build_detector(family, 2, width).double()
    train_detector(model, scans, TrainConfig(steps=STEPS, batch_size=4, seed=0), checkpoint, teacher=teacher,
                   distill=DistillConfig(method=method) if method else None, progress=False)
    assert not any("RankSync" in type(m).__name__ for m in model.modules())  # plain BatchNorm again
    return {k: v.clone() for k, v in model.state_dict().items()}


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


def _teacher_state():
    torch.manual_seed(1)
    return build_detector("pillars", 2, 1.0).state_dict()


@pytest.mark.parametrize("family, width, method", [("pillars", 0.5, None), ("pillars", 0.25, "pointdistiller"),
                                                   ("pillars", 0.25, "fitnet")])
def test_two_ranks_train_like_one_on_the_same_global_batch(scans, tmp_path, family, width, method):
    teacher = _teacher_state() if method else None
    single = _train(scans, family, width, teacher, method, tmp_path / "one.pt")
    ranks = dist.launch(_train, 2, scans, family, width, teacher, method, tmp_path / "two.pt", device="cpu")
    assert _max_difference(ranks, single) <= TOLERANCE
    # the before-training weights differ from both by far more: the comparison is not vacuous
    torch.manual_seed(0)
    initial = build_detector(family, 2, width).double().state_dict()
    assert _max_difference(initial, single) > 1e3 * TOLERANCE
    # rank 0 wrote the checkpoint, and it holds the trained weights
    written, state = load_checkpoint(tmp_path / "two.pt")
    assert state["step"] == STEPS
    stored = written.state_dict()  # a float32 model: the checkpoint loader builds the default dtype
    assert _max_difference(stored, {k: v.to(stored[k].dtype) for k, v in ranks.items()}) == 0.0


def _batchnorm_on_my_share(x, upstream, bn):
    """Rank r normalises rows [2r, 2r + 2) of ``x`` with RankSyncBatchNorm; returns what 1 process must match."""
    from distill3d.points.sync_batchnorm import convert_rank_sync_batchnorm

    rank = dist.context().rank
    synced = convert_rank_sync_batchnorm(torch.nn.Sequential(bn))
    share = x[2 * rank : 2 * rank + 2].clone().requires_grad_()
    (synced(share) * upstream[2 * rank : 2 * rank + 2]).sum().backward()
    weight_grad = dist.all_reduce_sum(synced[0].weight.grad)  # what DDP would sum (it averages)
    return synced(share).detach(), share.grad, weight_grad, synced[0].running_var.clone()


@pytest.mark.parametrize("shape", [(4, 3), (4, 3, 7), (4, 3, 5, 6)])
def test_rank_sync_batchnorm_equals_batchnorm_of_the_global_batch(shape):
    x = torch.randn(*shape, dtype=torch.float64) * 3 + 1
    upstream = torch.randn(*shape, dtype=torch.float64)
    bn = (torch.nn.BatchNorm1d if len(shape) < 4 else torch.nn.BatchNorm2d)(3).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    reference = bn.__class__(3).double()
    reference.load_state_dict(bn.state_dict())
    inputs = x.clone().requires_grad_()
    out = reference(inputs)
    (out * upstream).sum().backward()
    y, grad, weight_grad, running_var = dist.launch(_batchnorm_on_my_share, 2, x, upstream, bn, device="cpu")
    # rank 0's rows (its second forward saw the same statistics again: running stats moved twice)
    torch.testing.assert_close(grad, inputs.grad[:2], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(weight_grad, reference.weight.grad, rtol=1e-10, atol=1e-12)
    reference(x)  # the second update of the running statistics
    torch.testing.assert_close(running_var, reference.running_var, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(y, out.detach()[:2], rtol=1e-10, atol=1e-12)


def _predict_and_evaluate(model, scans):
    frames = predict(model, scans, batch_size=2, seed=5)
    ap = evaluate_detector(model, scans, SIM.class_names, (0.7, 0.5), batch_size=2)
    return frames, ap


@pytest.mark.parametrize("family", ["pillars", "point"])
def test_gathered_predictions_and_ap_equal_single_process(scans, family):
    torch.manual_seed(0)
    model = build_detector(family, 2, 0.25).eval()
    # a confident untrained head: lower the score bar so that there are detections to compare
    model.cfg.postprocess.score_threshold = 0.0
    frames, ap = _predict_and_evaluate(model, scans)
    gathered, gathered_ap = dist.launch(_predict_and_evaluate, 2, model, scans, device="cpu")
    assert len(gathered) == len(frames) == len(scans)  # 3 batches of 2: rank 0 predicted 2, rank 1 one
    assert sum(len(f.pred_scores) for f in frames) > 0
    for a, b in zip(gathered, frames):
        for name in ("pred_boxes", "pred_scores", "pred_labels", "gt_boxes"):
            assert (getattr(a, name) == getattr(b, name)).all()
    assert gathered_ap == ap


@pytest.fixture(scope="module")
def kitti(tmp_path_factory, scans):
    root = tmp_path_factory.mktemp("kitti")
    for s in scans:
        s.frame_id = f"train_{s.frame_id}"
    write_kitti_dataset(root, scans, SIM.class_names, split="train")
    return root


@pytest.mark.parametrize("nproc, message", [("0", "nproc"), ("-2", "nproc"), ("7", "more than the 6 training scans"),
                                            ("3", "does not split evenly")])
@pytest.mark.parametrize("command", ["train", "distill"])
def test_bad_nproc_is_one_line_and_exit_2(kitti, tmp_path, capsys, nproc, message, command):
    extra = ["--model", "pillars"] if command == "train" else ["--teacher", str(tmp_path / "teacher.pt")]
    if command == "distill":
        torch.manual_seed(0)
        from distill3d.points.train import save_checkpoint
        save_checkpoint(tmp_path / "teacher.pt", build_detector("pillars", 2, 0.25), {"class_names": SIM.class_names})
    argv = ["points", command, "--data", str(kitti), *extra, "--steps", "2", "--batch-size", "4", "--nproc", nproc,
            "--out", str(tmp_path / "out.pt")]
    code = console("distill3d", lambda _: cli_main(argv))  # the console script: bad input is one line, exit 2
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.slow
def test_cli_trains_on_two_processes(kitti, tmp_path):
    out = tmp_path / "teacher.pt"
    assert cli_main(["points", "train", "--data", str(kitti), "--model", "pillars", "--width", "0.25", "--steps", "2",
                     "--batch-size", "2", "--nproc", "2", "--out", str(out)]) == 0
    _, state = load_checkpoint(out)
    assert state["step"] == 2
    student = tmp_path / "student.pt"
    assert cli_main(["points", "distill", "--data", str(kitti), "--teacher", str(out), "--width", "0.25", "--steps", "2",
                     "--batch-size", "2", "--nproc", "2", "--out", str(student)]) == 0
    assert load_checkpoint(student)[1]["step"] == 2
