import pytest
import torch

from distill3d.points.detector import DetectorOutput
from distill3d.points.distill import (
    LOSS_FIELDS, DistillConfig, FitNetLoss, PointDistillerConfig, PointDistillerLoss, ResponseKDLoss, build_distill_loss,
    loss_settings,
)
from distill3d.points.edgeconv import EdgeConv, edge_inputs
from distill3d.points.train import build_detector
from distillcore.kd import kd_kl_loss


def output(features, importance, logits=None):
    logits = torch.zeros(features.shape[0] * features.shape[1], 3) if logits is None else logits
    return DetectorOutput(features, importance, logits)


def test_edgeconv_matches_per_node_loop():
    torch.manual_seed(0)
    conv = EdgeConv(4, 6, hidden=(8,))
    x = torch.randn(2, 10, 4)
    centres = torch.tensor([[0, 3], [9, 1]])
    nbrs = torch.tensor([[[0, 1, 2], [3, 4, 5]], [[9, 8, 7], [1, 0, 2]]])
    out = conv(x, centres, nbrs)
    for b in range(2):
        for n in range(2):
            xi = x[b, centres[b, n]]
            edges = torch.stack([torch.cat([xi, x[b, j] - xi]) for j in nbrs[b, n]])
            assert torch.allclose(out[b, n], conv.mlp(edges).max(0).values, atol=1e-6)
            assert torch.allclose(conv(x, centres, nbrs, aggregate=False)[b, n], conv.mlp(edges), atol=1e-6)
            assert torch.equal(edge_inputs(x, centres, nbrs)[b, n], edges)


def test_unpooled_edges_and_raw_teacher_target():
    """``pool_edges=False`` matches every edge of each local graph; ``teacher_adapter="none"`` makes the
    teacher's own edge features ``[x_i, x_j - x_i]`` the target, reweighted per local structure."""
    torch.manual_seed(0)
    cfg = PointDistillerConfig(num_important=3, neighbours=2, temperature=0.5, pool_edges=False, teacher_adapter="none")
    loss = PointDistillerLoss(4, 3, cfg)
    assert loss.teacher_adapter is None and loss.student_adapter.mlp[-1].out_features == 8
    t, s, importance = torch.randn(2, 7, 4), torch.randn(2, 7, 3), torch.rand(2, 7)
    centres, nbrs, scores = loss.select(output(t, importance))
    per_node = (edge_inputs(t, centres, nbrs) - loss.student_adapter(s, centres, nbrs, aggregate=False)).pow(2).mean((-1, -2))
    expected = (3 * torch.softmax(scores / 0.5, dim=1) * per_node).mean()
    assert loss(output(t, importance), output(s, importance)).item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="teacher_adapter"):
        PointDistillerLoss(4, 3, PointDistillerConfig(teacher_adapter="learned"))


def test_pointdistiller_selects_top_n_and_builds_graph_in_teacher_space():
    cfg = PointDistillerConfig(num_important=2, neighbours=2, temperature=1.0)
    loss = PointDistillerLoss(2, 3, cfg)
    teacher_feats = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [0.1, 0.0], [10.2, 0.0], [5.0, 5.0]]])
    importance = torch.tensor([[0.9, 0.1, 0.2, 0.8, 0.3]])
    centres, neighbours, scores = loss.select(output(teacher_feats, importance))
    assert centres.tolist() == [[0, 3]] and torch.allclose(scores, torch.tensor([[0.9, 0.8]]))
    assert neighbours.tolist() == [[[0, 2], [3, 1]]]  # nearest in teacher features, itself first


def test_reweighting_is_applied_and_matches_the_formula():
    torch.manual_seed(0)
    cfg = PointDistillerConfig(num_important=4, neighbours=3, temperature=0.5, pool_edges=True, teacher_adapter="random")
    loss = PointDistillerLoss(5, 3, cfg)
    t_feats, s_feats = torch.randn(1, 6, 5), torch.randn(1, 6, 3)
    flat = torch.tensor([[0.5, 0.5, 0.5, 0.5, 0.0, 0.0]])
    peaked = torch.tensor([[0.9, 0.5, 0.52, 0.51, 0.0, 0.0]])
    centres, neighbours, _ = loss.select(output(t_feats, peaked))
    g_t = loss.teacher_adapter(t_feats, centres, neighbours)
    g_s = loss.student_adapter(s_feats, centres, neighbours)
    per_node = (g_t - g_s).pow(2).mean(-1)[0]  # [N]
    scores = peaked[0, centres[0]]
    weights = 4 * torch.softmax(scores / 0.5, 0)
    expected = (weights * per_node).mean()
    assert loss(output(t_feats, peaked), output(s_feats, peaked)).item() == pytest.approx(expected.item(), rel=1e-5)
    # Same selected structures, different scores: the weights, hence the loss, change
    same_selection = torch.tensor([[0.99, 0.51, 0.5, 0.52, 0.0, 0.0]])
    assert loss.select(output(t_feats, same_selection))[0].sort().values.tolist() == centres.sort().values.tolist()
    assert loss(output(t_feats, same_selection), output(s_feats, same_selection)).item() != pytest.approx(expected.item(), rel=1e-3)
    # Uniform scores reduce it to the plain MSE
    uniform = loss(output(t_feats, flat), output(s_feats, flat))
    centres_f, nbrs_f, _ = loss.select(output(t_feats, flat))
    mse = (loss.teacher_adapter(t_feats, centres_f, nbrs_f) - loss.student_adapter(s_feats, centres_f, nbrs_f)).pow(2).mean()
    assert uniform.item() == pytest.approx(mse.item(), rel=1e-5)


@pytest.mark.parametrize("teacher_adapter", ["none", "random"])
def test_gradients_reach_student_and_its_adapter_only(teacher_adapter):
    loss = PointDistillerLoss(4, 2, PointDistillerConfig(num_important=3, neighbours=2, teacher_adapter=teacher_adapter))
    t = torch.randn(2, 8, 4, requires_grad=True)
    s = torch.randn(2, 8, 2, requires_grad=True)
    value = loss(output(t, torch.rand(2, 8)), output(s, torch.rand(2, 8)))
    value.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None
    assert all(p.grad is not None for p in loss.student_adapter.parameters())
    if teacher_adapter == "random":
        assert all(p.grad is None and not p.requires_grad for p in loss.teacher_adapter.parameters())


def test_reweight_applied_on_the_point_detector():
    """The reference computes the reweight for its point detector but never uses it: ours does."""
    torch.manual_seed(0)
    teacher, student = build_detector("point", 2, 0.5).eval(), build_detector("point", 2, 0.25).eval()
    scan = [torch.rand(3000, 4) * torch.tensor([25.0, 25.0, 2.5, 1.0]) + torch.tensor([0.0, -12.5, -2.5, 0.0])]
    inputs = teacher.preprocess(scan, torch.Generator().manual_seed(0))
    with torch.no_grad():
        t_out, s_out = teacher(inputs), student(inputs)
    # an untrained head is equally unsure everywhere: give the teacher distinct confidences
    t_out = DetectorOutput(t_out.features, torch.rand(t_out.importance.shape), t_out.response_logits)
    loss = PointDistillerLoss(teacher.feature_channels, student.feature_channels, PointDistillerConfig(temperature=0.05))
    base = loss(t_out, s_out)
    # same top-N order of points but sharper score gaps -> different weights -> different loss
    sharper = DetectorOutput(t_out.features, t_out.importance.pow(4), t_out.response_logits)
    assert loss.select(sharper)[0].tolist() == loss.select(t_out)[0].tolist()
    assert not torch.isclose(loss(sharper, s_out), base, rtol=1e-4)


def test_baselines_values():
    torch.manual_seed(0)
    t, s = torch.randn(2, 5, 4), torch.randn(2, 5, 3)
    fit = FitNetLoss(4, 3, weight=2.0)
    expected = 2.0 * (fit.adapter(s) - t).pow(2).mean()
    assert fit(output(t, torch.rand(2, 5)), output(s, torch.rand(2, 5))).item() == pytest.approx(expected.item(), rel=1e-5)
    logits_t, logits_s = torch.randn(10, 3), torch.randn(10, 3)
    kd = ResponseKDLoss(4, 3, weight=1.0, temperature=2.0)
    value = kd(output(t, torch.rand(2, 5), logits_t), output(s, torch.rand(2, 5), logits_s))
    assert value.item() == pytest.approx(kd_kl_loss(logits_s, logits_t, 2.0).item())
    assert kd(output(t, torch.rand(2, 5), logits_t), output(s, torch.rand(2, 5), logits_t)).item() == pytest.approx(0.0, abs=1e-6)
    assert build_distill_loss(DistillConfig(method="none"), 4, 3) is None


def test_teacher_width_mismatch_is_a_clear_error():
    loss = build_distill_loss(DistillConfig(method="pointdistiller"), 64, 16)
    with pytest.raises(ValueError, match="teacher features have 32 channels but the distiller was built for 64"):
        loss(output(torch.randn(1, 10, 32), torch.rand(1, 10)), output(torch.randn(1, 10, 16), torch.rand(1, 10)))
    with pytest.raises(ValueError, match="same \\[B, M\\] local structures"):
        loss(output(torch.randn(1, 10, 64), torch.rand(1, 10)), output(torch.randn(1, 12, 16), torch.rand(1, 12)))
    with pytest.raises(ValueError, match="method must be one of 'pointdistiller', 'fitnet', 'kd', 'none'"):
        DistillConfig(method="attention")


@pytest.mark.parametrize("method", ["pointdistiller", "fitnet", "kd"])
def test_loss_settings_are_the_fields_the_loss_reads(method):
    """Changing every field outside ``loss_settings`` leaves the loss value alone; changing one inside
    changes it (what lets the benchmark reuse a student that a ``--set`` does not concern)."""
    t, s = torch.randn(2, 9, 4, generator=torch.Generator().manual_seed(1)), torch.randn(2, 9, 3)
    logits_t, logits_s = torch.randn(18, 3), torch.randn(18, 3)
    importance = torch.rand(2, 9)

    def value(cfg):
        torch.manual_seed(0)  # the adapters' initialisation
        loss = build_distill_loss(cfg, 4, 3)
        return loss(output(t, importance, logits_t), output(s, importance, logits_s)).item()

    others = DistillConfig(method=method, fitnet_weight=2.0, kd_weight=3.0, kd_temperature=4.0,
                           pointdistiller=PointDistillerConfig(num_important=4, neighbours=3, temperature=2.0, weight=5.0))
    default = DistillConfig(method=method)
    for name in LOSS_FIELDS[method]:  # the method's own fields back at their defaults
        setattr(others, name, getattr(default, name))
    assert loss_settings(others) == loss_settings(default)
    assert value(others) == pytest.approx(value(default), rel=1e-6)
    own = {"pointdistiller": ("pointdistiller", PointDistillerConfig(weight=5.0)), "fitnet": ("fitnet_weight", 2.0),
           "kd": ("kd_temperature", 4.0)}[method]
    changed = DistillConfig(method=method, **dict([own]))
    assert loss_settings(changed) != loss_settings(default)
    assert value(changed) != pytest.approx(value(default), rel=1e-3)
