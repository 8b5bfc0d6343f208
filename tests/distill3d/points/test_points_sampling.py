"""Farthest point sampling: the C++ kernel against the torch reference loop (the oracle), and the
reference against the definition. The native kNN against a float64 brute-force sort."""
import pytest
import torch

from distill3d.points.sampling import (
    ball_group, farthest_point_sample, farthest_point_sample_reference, nearest_neighbours,
)
from distillcore.knn import knn
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


def _brute_force_knn(query, reference, k):
    """Oracle: every squared distance in float64, a stable sort (ties to the lower index)."""
    d = (query.double()[:, :, None] - reference.double()[:, None]).pow(2).sum(-1)
    order = torch.sort(d, dim=-1, stable=True).indices[..., :k]
    return d.gather(-1, order), order


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 256, 2048, 3, 16), (1, 2048, 256, 3, 3), (3, 128, 2048, 3, 128), (2, 7, 9, 5, 9)])
def test_native_knn_matches_brute_force(kernel, dtype, shape):
    b, m, n, d, k = shape
    gen = torch.Generator().manual_seed(m + n + k)
    reference = torch.rand(b, n, d, generator=gen, dtype=dtype) * 10
    reference[:, n // 2 :: 3] = reference[:, : len(range(n // 2, n, 3))]  # exact duplicates: tied distances
    on_points = min(m // 2, n)  # queries on reference points (a zero distance, duplicates tied) and off them
    query = torch.cat([reference[:, :on_points], torch.rand(b, m - on_points, d, generator=gen, dtype=dtype) * 10], 1)
    dist, idx = kernel.knn_points(query, reference, k, float("inf"))
    want_dist, want_idx = _brute_force_knn(query, reference, k)
    assert dist.dtype == dtype and idx.dtype == torch.long and idx.shape == (b, m, k)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(dist.double(), want_dist, rtol=tol, atol=tol)
    # the returned distances belong to the returned indices
    every = (query.double()[:, :, None] - reference.double()[:, None]).pow(2).sum(-1)
    torch.testing.assert_close(dist.double(), every.gather(-1, idx), rtol=tol, atol=tol)
    if dtype == torch.float64:  # no rounding difference to the oracle: ties go to the lower index, as there
        assert torch.equal(idx, want_idx)
    # the public function takes the kernel on CPU tensors without gradient, and agrees with distillcore.knn
    got_dist, got_idx = nearest_neighbours(query, reference, k)
    assert torch.equal(got_idx, idx)
    torch.testing.assert_close(got_dist, knn(query, reference, k)[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 256, 2048, 16, 2.0), (1, 128, 2048, 128, 4.0), (2, 64, 256, 16, 5.0)])
def test_native_ball_query_matches_knn_then_padding(kernel, dtype, shape):
    """The kernel ranks only the points inside the ball; the result must equal the definition: the k
    nearest, those beyond the radius replaced by the nearest (some balls hold more than k points,
    some fewer, some none)."""
    b, m, n, k, radius = shape
    gen = torch.Generator().manual_seed(n + k)
    reference = torch.rand(b, n, 3, generator=gen, dtype=dtype) * torch.tensor([25.6, 25.6, 4.0], dtype=dtype)
    reference[:, n // 2 :: 3] = reference[:, : len(range(n // 2, n, 3))]  # exact duplicates: tied distances
    query = torch.cat([reference[:, : m // 2], torch.rand(b, m - m // 2, 3, generator=gen, dtype=dtype) * 25.6], 1)
    dist, idx = _brute_force_knn(query, reference, k)
    expected = torch.where(dist <= torch.tensor(radius * radius, dtype=dtype).double(), idx, idx[..., :1])
    got = ball_group(query, reference, k, radius)
    inside = (dist <= radius * radius).sum(-1)
    assert (inside == k).any() and (inside < k).any()  # both regimes are exercised
    if dtype == torch.float64:
        assert torch.equal(got, expected)
    # float32 rounding may order near-equal neighbours differently: compare the distances they stand for
    every = (query.double()[:, :, None] - reference.double()[:, None]).pow(2).sum(-1)
    torch.testing.assert_close(every.gather(-1, got), every.gather(-1, expected), rtol=1e-5, atol=1e-5)
    if dtype == torch.float64:  # the torch path (a query that needs gradients) forms the same groups (its
        # top-k may order exact ties differently; float32 cdist may move points across the radius)
        torch_path = ball_group(query.clone().requires_grad_(), reference, k, radius)
        torch.testing.assert_close(every.gather(-1, torch_path), every.gather(-1, expected), rtol=1e-9, atol=1e-9)


def test_nearest_neighbours_keeps_gradients_through_distillcore_knn():
    query = torch.randn(1, 6, 3, dtype=torch.float64, requires_grad=True)
    reference = torch.randn(1, 20, 3, dtype=torch.float64)
    dist, _ = nearest_neighbours(query, reference, 4)
    assert dist.requires_grad
    torch.autograd.gradcheck(lambda q: nearest_neighbours(q, reference, 4)[0], (query,))


@pytest.mark.parametrize("k", [0, 21, 2.0, True])
def test_nearest_neighbours_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k must be"):
        nearest_neighbours(torch.randn(1, 5, 3), torch.randn(1, 20, 3), k)


def test_ball_group_pads_beyond_radius_with_nearest():
    reference = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0], [3.0, 0, 0], [10.0, 0, 0]]])
    query = torch.tensor([[[0.1, 0, 0]]])
    assert ball_group(query, reference, 4, radius=2.0).tolist() == [[[0, 1, 0, 0]]]
