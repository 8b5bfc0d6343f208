"""distillcore.knn: the chunked exact kNN against a full sort of the distance matrix."""
import pytest
import torch

from distillcore.knn import knn


def _reference(query, reference, k, exclude_self=False):
    d = ((query[:, :, None] - reference[:, None]) ** 2).sum(-1)
    if exclude_self:
        d = d + torch.diag(torch.full((d.shape[1],), float("inf"), dtype=d.dtype))
    order = d.argsort(dim=-1, stable=True)[..., :k]
    return d.gather(-1, order), order


@pytest.mark.parametrize("chunk_size", [1, 7, 2048])
def test_matches_a_full_sort_across_chunk_boundaries(chunk_size):
    g = torch.Generator().manual_seed(0)
    query, reference = torch.randn(2, 23, 5, generator=g, dtype=torch.float64), torch.randn(2, 31, 5, generator=g, dtype=torch.float64)
    dist, idx = knn(query, reference, 4, chunk_size=chunk_size)
    ref_dist, ref_idx = _reference(query, reference, 4)
    assert torch.equal(idx, ref_idx)
    torch.testing.assert_close(dist, ref_dist)


def test_exclude_self_keeps_exact_duplicates_as_neighbours():
    x = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [3.0, 0.0]]])
    dist, idx = knn(x, x, 1, exclude_self=True, chunk_size=3)
    assert idx[0, :2, 0].tolist() == [1, 0] and idx[0, 3, 0] == 2  # the twin, not itself
    assert idx[0, 2, 0] in (0, 1)  # node 2's two nearest are the twins, at the same distance
    assert dist[0, :, 0].tolist() == [0.0, 0.0, 1.0, 4.0]
    g = torch.Generator().manual_seed(1)
    y = torch.randn(1, 40, 3, generator=g, dtype=torch.float64)
    assert torch.equal(knn(y, y, 5, exclude_self=True, chunk_size=9)[1], _reference(y, y, 5, exclude_self=True)[1])


def test_distances_are_differentiable():
    g = torch.Generator().manual_seed(2)
    query = torch.randn(1, 6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    reference = torch.randn(1, 9, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda q: knn(q, reference, 3)[0], (query,))


def test_bad_input_names_the_problem():
    x = torch.randn(1, 4, 3)
    with pytest.raises(ValueError, match=r"k must be in \[1, 3\]"):
        knn(x, x, 4, exclude_self=True)
    with pytest.raises(ValueError, match="must agree on B and D"):
        knn(x, torch.randn(1, 4, 2), 1)
    with pytest.raises(ValueError, match="same rows"):
        knn(x, torch.randn(1, 5, 3), 1, exclude_self=True)
