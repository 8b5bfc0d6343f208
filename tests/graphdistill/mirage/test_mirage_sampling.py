"""Frequency-weighted sampling is really used (the reference code overwrites it with uniform draws)."""
import pytest
import torch
from torch_geometric.data import Data

from graphdistill.mirage.models import FeatureSpec, ModelConfig
from graphdistill.mirage.train import TrainConfig, predict_proba, train_gnn, weighted_loader

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_graph(feature: int, label: int) -> Data:
    return Data(x=torch.full((3, 1), feature), edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), y=torch.tensor([label]))


def test_sampling_counts_follow_weights():
    graphs = [tiny_graph(i, 0) for i in range(4)]
    weights = torch.tensor([1.0, 2.0, 3.0, 0.0])
    for i, g in enumerate(graphs):
        g.graph_id = torch.tensor([i])
    loader = weighted_loader(graphs, weights, batch_size=50, num_samples=6000, generator=torch.Generator().manual_seed(0))
    counts = torch.zeros(4)
    for batch in loader:
        counts += torch.bincount(batch.graph_id, minlength=4)
    expected = 6000 * weights / weights.sum()
    std = (6000 * (weights / weights.sum()) * (1 - weights / weights.sum())).sqrt()
    assert counts[3] == 0
    assert bool(((counts - expected).abs() <= 4 * std + 1e-9).all()), (counts, expected)


def test_training_draws_from_the_weights_not_uniformly():
    # Class-1 graphs get weight 0: a trainer that uses the weights never sees class 1 and so
    # predicts class 0 everywhere; one that samples uniformly (the reference bug) learns both.
    graphs = [tiny_graph(0, 0) for _ in range(8)] + [tiny_graph(1, 1) for _ in range(8)]
    spec = FeatureSpec([2], 1)
    config = TrainConfig(epochs=5, samples_per_epoch=256, batch_size=32, lr=1e-2)
    model_config = ModelConfig(model="gin", hidden=16, num_layers=1)
    weights = torch.tensor([1.0] * 8 + [0.0] * 8)
    skewed = train_gnn(graphs, weights, graphs, [], spec, 2, model_config, config)
    assert bool((predict_proba(skewed.model, graphs, 16).argmax(1) == 0).all())
    uniform = train_gnn(graphs, None, graphs, [], spec, 2, model_config, config)
    assert uniform.val["accuracy"] == 1.0


def test_bad_weights_raise():
    graphs = [tiny_graph(0, 0), tiny_graph(1, 1)]
    with pytest.raises(ValueError, match="weights must have shape"):
        weighted_loader(graphs, torch.ones(3), 2, 4, torch.Generator())
    with pytest.raises(ValueError, match=">= 0 with at least one positive"):
        weighted_loader(graphs, torch.tensor([-1.0, 1.0]), 2, 4, torch.Generator())
    with pytest.raises(ValueError, match="need training and validation graphs"):
        train_gnn(graphs, None, [], [], FeatureSpec([2], 1), 2, ModelConfig(), TrainConfig())
    with pytest.raises(ValueError, match="model must be one of 'gcn', 'gin', 'gat', got 'mlp'"):
        ModelConfig(model="mlp")  # refused where it is defined
    model_config = ModelConfig()
    model_config.model = "mlp"  # and when set afterwards, when training starts
    with pytest.raises(ValueError, match="model must be one of"):
        train_gnn(graphs, None, graphs, [], FeatureSpec([2], 1), 2, model_config, TrainConfig(epochs=1))
