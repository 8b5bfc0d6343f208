"""Query segmentation, mIoU, editing by feature similarity, feature-field PLY round trip."""
import pytest
import torch
import torch.nn.functional as F

from distill3d.fields.field import FeatureField
from distill3d.gaussians import GaussianInitConfig, Gaussians, rgb_to_sh0
from distill3d.query import (box_query, delete, extract, mask_prototypes, mean_iou, nearest_prototype, point_query,
                             recolor, segmentation_miou, select_gaussians, similarity_map, threshold_mask)


def make_field(features: torch.Tensor, decoder_low_dim=None, teacher_dim=None) -> FeatureField:
    n = features.shape[0]
    points = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
    config = GaussianInitConfig(sh_degree=1, feature_dim=features.shape[1])
    gaussians = Gaussians.from_points(points, torch.rand(n, 3), config)
    with torch.no_grad():
        gaussians.params["features"].copy_(features)
    return FeatureField(gaussians, teacher_dim or features.shape[1], decoder_low_dim)


def test_selection_is_exactly_the_gaussians_above_threshold():
    query = torch.tensor([1.0, 0.0, 0.0])
    angles = torch.tensor([0.0, 10.0, 30.0, 45.0, 60.0, 120.0])  # degrees from the query
    rad = torch.deg2rad(angles)
    features = torch.stack([rad.cos(), rad.sin(), torch.zeros(6)], 1) * torch.tensor([1, 2, 3, 4, 5, 6.0])[:, None]
    threshold = float(torch.cos(torch.deg2rad(torch.tensor(40.0))))
    selected = select_gaussians(features, query, threshold)
    assert selected.tolist() == [True, True, True, False, False, False]

    field = make_field(features)
    means = field.splats["means"].detach()
    removed = delete(field, selected)
    kept = extract(field, selected)
    assert torch.equal(removed.splats["means"], means[~selected])
    assert torch.equal(kept.splats["means"], means[selected])
    assert torch.equal(kept.gaussians.features, features[selected])
    assert removed.num_gaussians + kept.num_gaussians == field.num_gaussians

    red = recolor(field, selected, (1.0, 0.0, 0.0))
    sh0 = red.splats["sh0"].detach()
    assert torch.allclose(sh0[selected, 0], rgb_to_sh0(torch.tensor([1.0, 0.0, 0.0])).expand(3, 3))
    assert torch.equal(sh0[~selected], field.splats["sh0"].detach()[~selected])
    assert (red.splats["shN"].detach()[selected] == 0).all()
    assert torch.equal(red.splats["means"], field.splats["means"])  # recolor keeps every Gaussian


def test_edit_errors():
    field = make_field(torch.randn(4, 3))
    with pytest.raises(ValueError, match="threshold"):
        select_gaussians(field.gaussian_features(), torch.ones(3), 1.5)
    with pytest.raises(ValueError, match="query"):
        select_gaussians(field.gaussian_features(), torch.ones(5), 0.5)
    with pytest.raises(ValueError, match="selected"):
        delete(field, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="rgb"):
        recolor(field, torch.ones(4, dtype=torch.bool), (2.0, 0.0, 0.0))


def test_feature_field_ply_roundtrip(tmp_path):
    field = make_field(torch.randn(5, 7))
    path = field.save(tmp_path / "field.ply")
    loaded = FeatureField.load(path)
    for key, value in field.splats.items():
        torch.testing.assert_close(loaded.splats[key], value, rtol=0, atol=0)
    # with a decoder the decoder travels beside the PLY and decoded Gaussian features agree
    decoded = make_field(torch.randn(5, 2), decoder_low_dim=2, teacher_dim=6)
    decoded.save(tmp_path / "dec.ply")
    again = FeatureField.load(tmp_path / "dec.ply")
    torch.testing.assert_close(again.gaussian_features(), decoded.gaussian_features())
    plain = Gaussians.from_points(torch.rand(4, 3), None, GaussianInitConfig(sh_degree=0))
    plain.save_ply(tmp_path / "plain.ply")
    with pytest.raises(ValueError, match="feat_"):
        FeatureField.load(tmp_path / "plain.ply")


def test_point_box_and_threshold_queries():
    features = torch.zeros(2, 4, 6)
    features[0, :, :3] = 1.0  # left half points along e0
    features[1, :, 3:] = 1.0  # right half along e1
    q = point_query(features, x=1, y=2)
    assert torch.equal(q, torch.tensor([1.0, 0.0]))
    assert torch.equal(box_query(features, (3, 0, 6, 4)), torch.tensor([0.0, 1.0]))
    sim = similarity_map(features, q)
    assert torch.allclose(sim[:, :3], torch.ones(4, 3)) and torch.allclose(sim[:, 3:], torch.zeros(4, 3))
    mask = threshold_mask(features, box_query(features, (0, 0, 4, 4)), 0.9)  # box straddles: mean (0.75, 0.25)
    assert mask[:, :3].all() and not mask[:, 3:].any()
    with pytest.raises(ValueError, match="outside"):
        point_query(features, x=6, y=0)
    with pytest.raises(ValueError, match="box"):
        box_query(features, (2, 0, 2, 4))


def test_mean_iou_hand_computed():
    target = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 2]])
    # class 0: inter 3, union 4; class 1: inter 3, union 5; class 2: inter 0, union 1
    assert mean_iou(pred, target, 3) == pytest.approx((3 / 4 + 3 / 5 + 0) / 3)
    ignored = target.clone()
    ignored[0, 1] = -1  # the wrong pixel at (0, 1) is ignored: class 0 becomes 3/3, class 1 3/4
    assert mean_iou(pred, ignored, 3) == pytest.approx((1 + 3 / 4 + 0) / 3)


def test_prototype_segmentation_and_miou():
    generator = torch.Generator().manual_seed(0)
    directions = F.normalize(torch.randn(3, 8, generator=generator), dim=1)
    labels = (torch.arange(12) // 3 % 3).expand(10, 12).clone()  # vertical stripes 3 pixels wide
    features = directions[labels].permute(2, 0, 1) + 0.05 * torch.randn(8, 10, 12, generator=generator)
    sums, counts = mask_prototypes(features, labels, 3)
    assert counts.tolist() == [int((labels == k).sum()) for k in range(3)]
    assert torch.equal(nearest_prototype(features, sums / counts[:, None]), labels)
    assert segmentation_miou([features], [labels], [features], [labels], 3) == 1.0
    # coarse maps are upsampled to the mask grid before scoring: 3x3 cells still resolve the 3-pixel
    # stripes, 4x4 cells straddle them and lose most of the segmentation
    for cell, expected in ((3, 1.0), (4, 0.38)):
        coarse = F.avg_pool2d(features[None], cell)[0]
        assert segmentation_miou([features], [labels], [coarse], [labels], 3) == pytest.approx(expected, abs=0.01)
    with pytest.raises(ValueError, match="never appear"):
        segmentation_miou([features], [labels.clamp(max=1)], [features], [labels], 3)


def test_compress_command_writes_the_teacher_pca_field(tmp_path, capsys, monkeypatch):
    """`distill3d query compress`: the PLY + decoder it writes hold FeatureField.compressed of the field in
    the teacher's top-k PCA of the scene's training views; a teacher of another width is one clear error."""
    import sys

    from distill3d.cli import console_main, main
    from distill3d.data import default_scene_dir
    from distill3d.fields.decoder import teacher_pca
    from distill3d.fields.pipeline import prepare_scene

    field = make_field(torch.randn(20, 40))
    field.save(tmp_path / "field.ply")
    cache = tmp_path / "cache"
    out = tmp_path / "small.ply"
    common = ["query", "compress", str(tmp_path / "field.ply"), "--scene", str(default_scene_dir()),
              "--cache", str(cache), "--low-dim", "4"]
    assert main([*common, "--teacher", "efficientnet-lite0-s8", "--out", str(out)]) == 0
    small = FeatureField.load(out)
    assert small.decoder is not None and small.feature_dim == 4 and small.teacher_dim == 40
    prepared = prepare_scene(default_scene_dir(), "efficientnet-lite0-s8", cache, progress=False)
    expected = field.compressed(*teacher_pca([prepared.teacher_maps[n] for n in prepared.train.names], 4))
    torch.testing.assert_close(small.gaussian_features(), expected.gaussian_features(), atol=1e-5, rtol=1e-5)
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["distill3d", *common, "--teacher", "efficientnet-lite0",
                                      "--out", str(tmp_path / "x.ply")])
    assert console_main() == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "gives 112-d maps" in error[0], error
