"""Farthest point sampling: the C++ kernel against the torch reference loop (the oracle), and the
reference against the definition."""
import pytest
import torch

from distill3d.points.sampling import farthest_point_sample, farthest_point_sample_reference
from distill3d.render import native


@pytest.fixture(scope="module")
def kernel():
    # The rasterizer tests require the CPU build as well: a build failure is a failure, not a skip.
    assert native.native_available("cpu"), native.native_build_error()
    return native._extension(torch.device("cpu"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_fps_equals_reference_loop(kernel, dtype):
    gen = torch.Generator().manual_seed(3)
    # LiDAR-like scans: a ground plane (many near-equal distances), clusters, and exact duplicates.
    ground = torch.rand(4, 1500, 3, generator=gen, dtype=dtype) * torch.tensor([25.6, 25.6, 0.0], dtype=dtype)
    objects = torch.randn(4, 500, 3, generator=gen, dtype=dtype) * 0.5 + torch.rand(4, 1, 3, generator=gen, dtype=dtype) * 20
    xyz = torch.cat([ground, objects, ground[:, :48]], dim=1)  # [4, 2048, 3]
    for samples in (1, 256, 2048):
        expected = farthest_point_sample_reference(xyz, samples)
        assert torch.equal(kernel.farthest_point_sample(xyz, samples), expected)
        assert torch.equal(farthest_point_sample(xyz, samples), expected)
    # a non-contiguous input gives the same answer
    assert torch.equal(farthest_point_sample(xyz.transpose(0, 1).contiguous().transpose(0, 1), 64),
                       farthest_point_sample_reference(xyz, 64))


def test_reference_matches_definition():
    xyz = torch.randn(2, 40, 3, dtype=torch.float64)
    idx = farthest_point_sample_reference(xyz, 12)
    for b in range(2):
        assert idx[b, 0] == 0
        for i in range(1, 12):
            chosen = xyz[b, idx[b, :i]]
            nearest = torch.cdist(xyz[b], chosen).min(dim=1).values
            assert idx[b, i] == nearest.argmax()
    # every point once when sampling all of them
    assert sorted(farthest_point_sample_reference(xyz, 40)[0].tolist()) == list(range(40))


@pytest.mark.parametrize("samples", [0, 41, 2.0, True])
def test_fps_rejects_bad_sample_counts(samples):
    with pytest.raises(ValueError, match="num_samples"):
        farthest_point_sample(torch.randn(1, 40, 3), samples)


def test_fps_rejects_non_xyz():
    with pytest.raises(ValueError, match=r"\[B, N, 3\]"):
        farthest_point_sample(torch.randn(1, 40, 4), 4)
