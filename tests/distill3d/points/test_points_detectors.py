import math

import pytest
import torch

from distill3d.points.box_coder import decode_boxes, encode_boxes
from distill3d.points.detector import DetectorOutput
from distill3d.points.pillars import PillarConfig, PillarDetector
from distill3d.points.point_detector import GroupedPointNet, PointDetector, PointDetectorConfig
from distill3d.points.sampling import ball_group, farthest_point_sample
from distillcore.knn import knn
from distill3d.points.train import build_detector

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gt_boxes():
    return torch.tensor([[8.3, -2.1, -1.0, 3.0, 2.0, 1.5, 0.4], [15.7, 4.4, -1.2, 1.2, 1.0, 0.9, -1.1]])


def test_box_code_round_trip_is_exact_up_to_half_turn():
    boxes = torch.tensor([[1.0, 2.0, -1.0, 4.0, 2.0, 1.5, 3.0], [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, -0.5]])
    ref, scale = torch.tensor([[0.5, 1.5, 0.0], [0.2, 0.1, 0.0]]), torch.tensor([0.8, 0.8, 1.0])
    back = decode_boxes(encode_boxes(boxes, ref, scale), ref, scale)
    assert torch.allclose(back[:, :6], boxes[:, :6], atol=1e-5)
    assert torch.allclose(torch.sin(2 * back[:, 6]), torch.sin(2 * boxes[:, 6]), atol=1e-5)
    assert torch.allclose(torch.cos(2 * back[:, 6]), torch.cos(2 * boxes[:, 6]), atol=1e-5)


def test_pillar_scatter_max_matches_per_pillar_loop():
    model = PillarDetector(PillarConfig(width=0.25)).eval()
    pts = torch.tensor([[1.25, 0.1, -1.0, 0.3], [1.35, 0.3, -0.5, 0.9], [1.5, 0.2, -1.5, 0.1], [5.0, -3.0, -1.0, 0.5]])  # pillar 0.4 m
    canvas = model.pillar_canvas([pts])
    cfg = model.cfg
    h, w = cfg.grid_size
    for group in ([0, 1, 2], [3]):
        p = pts[group]
        ix = int((p[0, 0] - cfg.point_range[0]) / cfg.pillar_size)
        iy = int((p[0, 1] - cfg.point_range[1]) / cfg.pillar_size)
        centre = torch.tensor([(ix + 0.5) * cfg.pillar_size + cfg.point_range[0], (iy + 0.5) * cfg.pillar_size + cfg.point_range[1]])
        feats = torch.cat([p, p[:, :3] - p[:, :3].mean(0), p[:, :2] - centre], 1)
        expected = model.pfn(feats).max(0).values
        assert torch.allclose(canvas[0, :, iy, ix], expected, atol=1e-5)
    assert int((canvas.abs().sum(1) > 0).sum()) <= 2  # nothing outside the two pillars


def test_pillar_head_decodes_perfect_outputs_to_the_boxes():
    model = PillarDetector(PillarConfig(width=0.25))
    h, w = model.cfg.grid_size[0] // 2, model.cfg.grid_size[1] // 2
    boxes, labels = gt_boxes(), torch.tensor([0, 1])
    heat, codes, mask = model.targets([boxes], [labels], (h, w))
    assert mask.sum() == 2 and heat.max() == 1.0
    logits = torch.logit(heat.clamp(1e-4, 1 - 1e-4))
    out = DetectorOutput(torch.zeros(1, h * w, 4), torch.zeros(1, h * w), torch.zeros(1, 2), {"heatmap": logits, "regression": codes})
    det = model.decode(out)[0]
    assert det.labels.tolist() == [0, 1] or sorted(det.labels.tolist()) == [0, 1]
    order = det.labels.argsort()
    assert torch.allclose(det.boxes[order][:, :6], boxes[:, :6], atol=1e-4)
    assert torch.allclose(torch.cos(2 * (det.boxes[order][:, 6] - boxes[:, 6])), torch.ones(2), atol=1e-4)


def test_point_head_targets_and_decoding():
    model = PointDetector(PointDetectorConfig(width=0.25))
    boxes, labels = gt_boxes(), torch.tensor([0, 1])
    xyz = torch.tensor([[8.3, -2.1, -1.0], [8.9, -2.0, -0.5], [15.7, 4.4, -1.2], [20.0, 0.0, -1.0], [9.774, -1.477, -1.0]])
    cls, codes, weight = model.targets(xyz, boxes, labels)
    assert cls[:4].tolist() == [1, 1, 2, 0]
    assert weight[3] == 1 and weight[4] == 0  # just outside the first box: ignored, not background
    back = decode_boxes(codes[:3], xyz[:3], torch.ones(3))
    assert torch.allclose(back[:, :6], boxes[[0, 0, 1], :6], atol=1e-5)


def test_grouped_pointnet_matches_per_centre_loop():
    torch.manual_seed(0)
    net = GroupedPointNet(k=4, radius=0.5, in_channels=2, channels=[8, 6]).eval()
    xyz, feats = torch.rand(1, 30, 3), torch.rand(1, 30, 2)
    centres = torch.tensor([[[0.5, 0.5, 0.5], [0.1, 0.9, 0.2]]])
    out = net(centres, xyz, feats)
    for s, c in enumerate(centres[0]):
        d = (xyz[0] - c).norm(dim=1)
        near = d.argsort()[:4]
        near = torch.where(d[near] <= 0.5, near, near[0])  # outside the ball: the nearest point again
        rows = torch.cat([(xyz[0, near] - c) / 0.5, feats[0, near]], 1)  # [k, 5]
        expected = net.mlp(rows).amax(0)
        assert torch.allclose(out[0, s], expected, atol=1e-5)


def test_point_proposals_decode_perfect_outputs_and_perfect_votes_cost_nothing():
    model = PointDetector(PointDetectorConfig(width=0.25))
    boxes, labels = gt_boxes(), torch.tensor([0, 1])
    xyz = torch.tensor([[[8.3, -2.1, -1.0], [8.9, -2.0, -0.5], [15.7, 4.4, -1.2], [20.0, 0.0, -1.0]]])
    cls, codes, _ = model.targets(xyz[0], boxes, labels)
    offsets = codes[:, :3][None]  # foreground points vote exactly for their box centre
    votes = (xyz + offsets)[:, :3]  # one proposal per foreground point
    _, vote_codes, _ = model.targets(votes[0], boxes, labels)
    confident = torch.where(torch.nn.functional.one_hot(cls, 3).bool(), 9.0, -9.0)[None]  # [1, 4, K + 1]
    head = {"logits": confident, "offsets": offsets, "xyz": xyz, "votes": votes,
            "proposal_logits": confident[:, :3], "proposal_regression": vote_codes[None]}
    out = DetectorOutput(torch.zeros(1, 4, 4), torch.zeros(1, 4), torch.zeros(4, 3), head)
    losses = model.loss(out, [boxes], [labels])
    assert float(losses["vote"]) == 0 and float(losses["reg"]) == 0
    assert float(losses["cls"]) < 1e-6 and float(losses["proposal_cls"]) < 1e-6
    det = model.decode(out)[0]  # the two votes of the first box are one box after NMS
    order = det.labels.argsort()
    assert det.labels[order].tolist() == [0, 1]
    assert torch.allclose(det.boxes[order][:, :6], boxes[:, :6], atol=1e-4)
    assert torch.allclose(torch.cos(2 * (det.boxes[order][:, 6] - boxes[:, 6])), torch.ones(2), atol=1e-4)


def test_fps_and_knn_against_brute_force():
    torch.manual_seed(1)
    xyz = torch.rand(2, 50, 3)
    idx = farthest_point_sample(xyz, 6)
    for b in range(2):  # each pick is the farthest from the ones before
        chosen = [0]
        for _ in range(5):
            d = torch.cdist(xyz[b], xyz[b, chosen]).min(1).values
            chosen.append(int(d.argmax()))
        assert idx[b].tolist() == chosen
    dist, nn_idx = knn(xyz[:, :4], xyz, 5)
    brute = torch.cdist(xyz[:, :4], xyz).topk(5, largest=False)
    assert torch.equal(nn_idx, brute.indices)
    assert torch.allclose(dist, brute.values.pow(2), atol=1e-6)
    grouped = ball_group(xyz[:, :4], xyz, 5, radius=0.2)
    far = dist > 0.04
    assert torch.equal(grouped[far], nn_idx[..., :1].expand_as(nn_idx)[far])


@pytest.mark.parametrize("family", ["pillars", "point"])
def test_width_multipliers_compress_about_4x_and_16x(family):
    count = lambda m: sum(p.numel() for p in m.parameters())
    full = count(build_detector(family, 2, 1.0))
    assert 3.3 < full / count(build_detector(family, 2, 0.5)) < 4.5
    assert 10 < full / count(build_detector(family, 2, 0.25)) < 17


@pytest.mark.parametrize("family", ["pillars", "point"])
def test_forward_loss_backward_and_decode(family):
    model = build_detector(family, 2, 0.25)
    torch.manual_seed(0)
    scans = [torch.rand(3000, 4) * torch.tensor([25.0, 25.0, 2.5, 1.0]) + torch.tensor([0.0, -12.5, -2.5, 0.0]) for _ in range(2)]
    inputs = model.preprocess(scans, torch.Generator().manual_seed(0))
    out = model(inputs)
    b, m, c = out.features.shape
    assert (b, c) == (2, model.feature_channels) and out.importance.shape == (2, m)
    assert bool((out.importance >= 0).all() and (out.importance <= 1).all())
    losses = model.loss(out, [gt_boxes(), gt_boxes()[:1]], [torch.tensor([0, 1]), torch.tensor([1])])
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        dets = model.decode(model(inputs))
    assert len(dets) == 2 and all(d.boxes.shape[1] == 7 and len(d.boxes) <= 50 for d in dets)


@pytest.mark.parametrize("family", ["pillars", "point"])
def test_distill_only_pass_gives_what_distillation_reads_unchanged(family):
    model = build_detector(family, 2, 0.25).eval()
    scans = [torch.rand(3000, 4) * torch.tensor([25.0, 25.0, 2.5, 1.0]) + torch.tensor([0.0, -12.5, -2.5, 0.0])]
    inputs = model.preprocess(scans, torch.Generator().manual_seed(0))
    with torch.no_grad():
        full, part = model(inputs), model(inputs, distill_only=True)
    for name in ("features", "importance", "response_logits"):
        assert torch.equal(getattr(full, name), getattr(part, name)), name
    skipped = {"pillars": {"regression"}, "point": {"votes", "proposal_logits", "proposal_regression"}}[family]
    assert set(full.head) - set(part.head) == skipped


@pytest.mark.parametrize("family", ["pillars", "point"])
def test_bad_scans_are_rejected(family):
    model = build_detector(family, 2, 0.25)
    good = torch.rand(100, 4) * torch.tensor([10.0, 10.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"points\[1\] is empty"):
        model.preprocess([good, torch.zeros(0, 4)])
    bad = good.clone()
    bad[3, 0] = math.nan
    with pytest.raises(ValueError, match=r"points\[0\] has 1 non-finite"):
        model.preprocess([bad])
    with pytest.raises(ValueError, match=r"shape \[P, 4\]"):
        model.preprocess([good[:, :3]])
    with pytest.raises(ValueError, match="no point inside the detection range"):
        model.preprocess([good - 100])
    with pytest.raises(ValueError, match="unknown detector family"):
        build_detector("voxelnet", 2)
