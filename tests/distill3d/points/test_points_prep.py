"""Per-scan preprocessing on the native kernels (cropping, pillar point features), the row gather and
PointNet++ grouping: each against its torch reference, bit for bit where both do the same float
arithmetic."""
import pytest
import torch

from distill3d.points.detector import crop_to_range, range_indices
from distill3d.points.pillars import PillarConfig, PillarDetector, pillar_point_features, pillar_point_features_reference
from distill3d.points.point_detector import PointDetector, PointDetectorConfig, group_points
from distill3d.points.sampling import gather_rows
from distill3d.render import native

RANGE = (0.0, -12.8, -3.0, 25.6, 12.8, 1.0)


@pytest.fixture(scope="module")
def kernel():
    assert native.native_available("cpu"), native.native_build_error()
    return native._extension(torch.device("cpu"))


def lidar_like(gen, n, dtype):
    """Points around and inside RANGE, some exactly on its bounds and on pillar borders, intensity last."""
    lo, hi = torch.tensor(RANGE[:3], dtype=dtype), torch.tensor(RANGE[3:], dtype=dtype)
    xyz = lo - 2 + torch.rand(n, 3, generator=gen, dtype=dtype) * (hi - lo + 4)
    xyz[: n // 10] = lo  # on the lower bounds: inside
    xyz[n // 10 : n // 5, 0] = hi[0]  # on an upper bound: outside
    xyz[n // 5 : n // 4, :2] = torch.randint(0, 64, (n // 4 - n // 5, 2), generator=gen).to(dtype) * 0.4 + lo[:2]  # pillar borders
    return torch.cat([xyz, torch.rand(n, 1, generator=gen, dtype=dtype)], 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_crop_equals_torch_comparisons(kernel, dtype):
    gen = torch.Generator().manual_seed(0)
    points = lidar_like(gen, 5000, dtype)
    points[7, 1] = float("nan")  # NaN compares false: outside
    points[11, 2] = float("inf")
    lo, hi = points.new_tensor(RANGE[:3]), points.new_tensor(RANGE[3:])
    expected = ((points[:, :3] >= lo) & (points[:, :3] < hi)).all(1).nonzero().squeeze(1)
    assert 0 < len(expected) < len(points)
    assert torch.equal(kernel.crop_points(points, lo, hi), expected)
    assert torch.equal(range_indices(points, RANGE, 0), expected)
    assert torch.equal(crop_to_range(points, RANGE, 0), points[expected])
    # a non-contiguous scan (a column slice of a wider array) gives the same rows
    wide = torch.cat([points, torch.zeros(len(points), 2, dtype=dtype)], 1)
    assert torch.equal(range_indices(wide[:, :4], RANGE, 0), expected)


def test_crop_rejects_a_scan_without_points_in_range():
    with pytest.raises(ValueError, match=r"points\[3\] has no point inside"):
        range_indices(torch.tensor([[100.0, 0.0, 0.0, 0.5]]), RANGE, 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_pillar_features_equal_torch_reference_bitwise(dtype):
    cfg = PillarConfig()
    gen = torch.Generator().manual_seed(1)
    scans = [crop_to_range(lidar_like(gen, n, dtype), RANGE, i) for i, n in enumerate((3000, 20, 800))]
    cells, feats = pillar_point_features(scans, cfg)
    want_cells, want_feats = pillar_point_features_reference(scans, cfg)
    assert feats.dtype == dtype and feats.shape == (sum(map(len, scans)), 9)
    assert torch.equal(cells, want_cells)
    assert torch.equal(feats, want_feats)
    h, w = cfg.grid_size
    assert int(cells.min()) >= 0 and int(cells.max()) < len(scans) * h * w
    assert int(cells[-1]) // (h * w) == 2  # the last scan's points land in its own canvas


def test_pillar_features_keep_gradients_through_the_reference():
    cfg = PillarConfig()
    points = crop_to_range(lidar_like(torch.Generator().manual_seed(2), 400, torch.float64), RANGE, 0).requires_grad_()
    _, feats = pillar_point_features([points], cfg)
    assert feats.requires_grad
    feats.sum().backward()
    # summed over the points: x and y count 1 (themselves) + 0 (deviations from a pillar's mean sum to zero)
    # + 1 (offset to the pillar centre, a constant); z and r count once
    assert torch.allclose(points.grad[:, :2], torch.full_like(points.grad[:, :2], 2.0))
    assert torch.allclose(points.grad[:, 2:], torch.ones_like(points.grad[:, 2:]))


def test_pillar_detector_runs_the_same_on_both_feature_paths():
    torch.manual_seed(0)
    model = PillarDetector(PillarConfig(width=0.25)).eval()
    scans = model.preprocess([lidar_like(torch.Generator().manual_seed(3), 2000, torch.float32)])
    with torch.no_grad():
        native_canvas = model.pillar_canvas(scans)
    with torch.enable_grad():  # a scan that needs gradients takes the torch reference
        reference_canvas = model.pillar_canvas([scans[0].clone().requires_grad_()])
    assert torch.equal(native_canvas, reference_canvas.detach())


@pytest.mark.parametrize("batch", [1, 3])
def test_gather_rows_equals_torch_gather(batch):
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 50, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(0, 50, (batch, 7, 4), generator=gen)
    got = gather_rows(x, idx)
    want = torch.gather(x, 1, idx.reshape(batch, -1, 1).expand(-1, -1, 6)).reshape(batch, 7, 4, 6)
    assert torch.equal(got, want)
    weights = torch.randn(got.shape, generator=gen, dtype=torch.float64)
    (grad,) = torch.autograd.grad((got * weights).sum(), x)
    (want_grad,) = torch.autograd.grad((want * weights).sum(), x)
    assert torch.allclose(grad, want_grad, atol=1e-12)


def test_point_preprocess_resamples_the_cropped_scan():
    """The resampling indexes the scan through the crop's indices: the same points as cropping first."""
    model = PointDetector(PointDetectorConfig(num_points=256))
    gen = torch.Generator().manual_seed(4)
    big, small = lidar_like(gen, 3000, torch.float32), lidar_like(gen, 150, torch.float32)
    got = model.preprocess([big, small], torch.Generator().manual_seed(5))
    reference = torch.Generator().manual_seed(5)
    crop = crop_to_range(big, RANGE, 0)
    want_big = crop[torch.randperm(len(crop), generator=reference)[:256]]
    crop = crop_to_range(small, RANGE, 1)
    extra = torch.randint(len(crop), (256 - len(crop),), generator=reference)
    want_small = crop[torch.cat([torch.arange(len(crop)), extra])]
    assert torch.equal(got, torch.stack([want_big, want_small]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_group_rows_equal_torch_reference_bitwise(kernel, dtype):
    gen = torch.Generator().manual_seed(6)
    xyz = torch.randn(2, 300, 3, generator=gen, dtype=dtype) * 5
    feats = torch.randn(2, 300, 5, generator=gen, dtype=dtype)
    centres = torch.randn(2, 20, 3, generator=gen, dtype=dtype)
    group = torch.randint(0, 300, (2, 20, 7), generator=gen)
    rel = (gather_rows(xyz, group) - centres[:, :, None]) / 2.5
    want = torch.cat([rel, gather_rows(feats, group)], dim=-1)
    assert torch.equal(kernel.group_points(xyz, feats, centres, group, 2.5), want)
    assert torch.equal(group_points(xyz, feats, centres, group, 2.5), want)
    # features that need gradients (a set abstraction's input during training) take the torch version
    feats.requires_grad_()
    grouped = group_points(xyz, feats, centres, group, 2.5)
    assert grouped.requires_grad and torch.equal(grouped.detach(), want)
    outside = group.clone()
    outside[1, 3, 2] = 300  # one past the last point
    with pytest.raises(RuntimeError, match="group indices"):
        kernel.group_points(xyz, feats.detach(), centres, outside, 2.5)


@pytest.mark.parametrize("family", ["pillars", "point"])
def test_detectors_give_the_same_outputs_without_the_native_kernels(monkeypatch, family):
    """End to end against the torch fallbacks that CUDA tensors (or a machine without a compiler) take:
    cropping, pillar features, FPS, ball query / kNN and grouping. In float64 on distinct random points,
    so the torch kNN's rounding and tie order cannot change a neighbourhood."""
    torch.manual_seed(0)
    if family == "pillars":
        model = PillarDetector(PillarConfig(width=0.25))
    else:
        model = PointDetector(PointDetectorConfig(width=0.25, num_points=512, sa_centres=(64, 16), proposals=32,
                                                  proposal_neighbours=32))
    model = model.double().eval()
    gen = torch.Generator().manual_seed(7)
    lo, hi = torch.tensor(RANGE[:3], dtype=torch.float64), torch.tensor(RANGE[3:], dtype=torch.float64)
    scans = [torch.cat([lo + torch.rand(n, 3, generator=gen, dtype=torch.float64) * (hi - lo + 1),
                        torch.rand(n, 1, generator=gen, dtype=torch.float64)], 1) for n in (1500, 900)]

    def run():
        with torch.no_grad():
            return model(model.preprocess(scans, torch.Generator().manual_seed(8)))

    native_out = run()
    monkeypatch.setattr(native, "native_available", lambda device="cpu": False)
    torch_out = run()
    torch.testing.assert_close(native_out.features, torch_out.features, rtol=1e-9, atol=1e-9)
    for key, value in native_out.head.items():
        torch.testing.assert_close(value, torch_out.head[key], rtol=1e-9, atol=1e-9)
