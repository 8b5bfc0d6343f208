"""The default distilled set (single trees, readout-mass weights) trains a better GNN than the former one
(sets of up to 3 trees, support-count weights) at the same >= 50x compression."""
import numpy as np
import pytest
from conftest import sized

from graphdistill.data.graphs import load_solubility
from graphdistill.mirage import DistillConfig, MiningConfig, ModelConfig, TrainConfig, distill, train_gnn

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FORMER_SWEEP = (0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.04, 0.03, 0.025, 0.02, 0.015, 0.01)


@pytest.mark.slow
def test_single_trees_with_readout_mass_beat_former_sets():
    splits = load_solubility()
    former = distill(splits, DistillConfig(mining=MiningConfig(max_pattern_size=3), sweep=FORMER_SWEEP))
    former.pattern_mass = None  # support-count weights, as before
    fixed = distill(splits, DistillConfig())
    assert min(former.compression_ratio, fixed.compression_ratio) >= 50
    config = dict(epochs=sized(4, 20), samples_per_epoch=sized(512, 1024))
    auc = {}
    for name, distilled in (("former", former), ("fixed", fixed)):
        graphs, weights = distilled.to_graphs()
        auc[name] = np.mean([
            train_gnn(graphs, weights, splits.val, splits.test, distilled.feature_spec, splits.num_classes,
                      ModelConfig(model="gin", hidden=32), TrainConfig(**config, seed=seed)).test["roc_auc"]
            for seed in (0, 1)
        ])
    # Measured: 0.65 -> 0.71 over 4 seeds at the reduced size (4 epochs of 512, hidden 32); 0.73 -> 0.77
    # with the benchmark's 20 epochs of 1024 (3 seeds). Full-data GIN reaches 0.89.
    assert auc["fixed"] > auc["former"] + 0.02, auc
