"""Discretisation of node features into tree labels."""
import pytest
import torch

from graphdistill.mirage.labels import DiscretizeConfig, discretize


def test_categorical_rows_become_labels():
    x = torch.tensor([[1, 0], [2, 0], [1, 0], [1, 1]])
    out = discretize(x, None, DiscretizeConfig())
    assert out.labels[0] == out.labels[2] and len(set(out.labels.tolist())) == 3
    assert torch.equal(out.table[out.labels], x)


def test_continuous_quantile_bins_fit_on_training_rows():
    # 100 training values 0..99 in 4 quantile bins of 25; the held-out 1000 falls in the last bin.
    x = torch.cat([torch.arange(100.0), torch.tensor([1000.0])])[:, None]
    fit = torch.ones(101, dtype=torch.bool)
    fit[-1] = False
    out = discretize(x, fit, DiscretizeConfig(num_bins=4))
    counts = torch.bincount(out.labels[:100])
    assert counts.tolist() == [25, 25, 25, 25]
    assert out.labels[-1] == out.labels[99]
    # The representative of a bin is the mean of its members.
    assert torch.isclose(out.table[out.labels[0], 0], torch.tensor(12.0))


def test_few_valued_float_columns_stay_exact():
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])  # one-hot floats
    out = discretize(x, None, DiscretizeConfig(num_bins=8))
    assert out.labels.tolist() == [0, 1, 0] or out.labels.tolist() == [1, 0, 1]
    assert torch.equal(out.table[out.labels], x)


def test_non_discretisable_features_raise():
    with pytest.raises(ValueError, match="node features x has 1 non-finite"):
        discretize(torch.tensor([[0.0], [float("nan")]]), None, DiscretizeConfig(), name="node features x")
    with pytest.raises(ValueError, match="complex"):
        discretize(torch.zeros(2, 1, dtype=torch.complex64), None, DiscretizeConfig())
    with pytest.raises(ValueError, match="num_bins"):
        discretize(torch.zeros(2, 1), None, DiscretizeConfig(num_bins=0))
    with pytest.raises(ValueError, match="no rows to fit"):
        discretize(torch.zeros(2, 1), torch.zeros(2, dtype=torch.bool), DiscretizeConfig())
    for columnless in (torch.zeros(5, 0), torch.zeros(5, 0, dtype=torch.long), torch.zeros(0, 0)):
        with pytest.raises(ValueError, match="node features x is empty"):
            discretize(columnless, None, DiscretizeConfig(), name="node features x")
    with pytest.raises(ValueError, match="complex"):  # checked on a matrix without rows too
        discretize(torch.zeros(0, 1, dtype=torch.complex64), None, DiscretizeConfig())
    with pytest.raises(ValueError, match="fit_mask"):
        discretize(torch.zeros(0, 3), torch.zeros(7, dtype=torch.bool), DiscretizeConfig())


def test_a_matrix_without_rows_has_no_labels_and_keeps_its_width():
    # the edge features of graphs without a single edge: a valid set, nothing to label
    out = discretize(torch.zeros(0, 3, dtype=torch.long), torch.zeros(0, dtype=torch.bool), DiscretizeConfig())
    assert out.labels.shape == (0,) and out.labels.dtype == torch.long
    assert torch.equal(out.table, torch.zeros(1, 3, dtype=torch.long))
