"""gather_rows's flattened index_select (row b N + idx of [B N, C]) at its edges: an index outside a
scan's own N rows is an error (as torch.gather's), never a row of the neighbouring scan, and clouds with
no rows gather nothing."""
import pytest
import torch

from distill3d.points.sampling import gather_rows


@pytest.mark.parametrize("bad", [(0, 5), (1, -1), (0, -6)])
def test_an_index_outside_the_scan_is_an_error_not_a_row_of_another_scan(bad):
    x = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    idx = torch.zeros(2, 4, dtype=torch.long)
    idx[bad[0], 1] = bad[1]
    with pytest.raises(IndexError, match=r"\[0, 5\)"):
        gather_rows(x, idx)
    with pytest.raises(RuntimeError):  # the reference it replaced refuses the same index
        torch.gather(x, 1, idx[..., None].expand(-1, -1, 3))


def test_clouds_without_rows_gather_nothing():
    for b in (1, 3):
        out = gather_rows(torch.zeros(b, 0, 4), torch.zeros(b, 0, 2, dtype=torch.long))
        want = torch.gather(torch.zeros(b, 0, 4), 1, torch.zeros(b, 0, 4, dtype=torch.long)).reshape(b, 0, 2, 4)
        assert out.shape == want.shape == (b, 0, 2, 4)


def test_in_range_rows_of_every_scan_equal_torch_gather():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, 2, generator=gen)
    idx = torch.tensor([[0, 5], [5, 0], [2, 5]])  # each scan's first and last rows
    want = torch.gather(x, 1, idx[..., None].expand(-1, -1, 2))
    assert torch.equal(gather_rows(x, idx), want)


def test_one_scan_refuses_an_index_outside_it_too():
    x = torch.randn(1, 5, 3)
    for bad in (5, -1):
        with pytest.raises(IndexError):
            gather_rows(x, torch.tensor([[0, bad]]))
