"""Mirage: model-agnostic graph-data-set distillation into frequent computation trees."""
from .cluster import ClusterConfig
from .coreset import k_center_subset_of_bytes
from .covered import covered_roots, with_covered_readout
from .distill import DistillConfig, distill
from .distilled import DistilledDataset, graphs_nbytes
from .labels import DiscretizeConfig, discretize
from .mining import MiningConfig, mine_patterns
from .models import FeatureSpec, GraphClassifier, ModelConfig
from .train import TrainConfig, evaluate, train_gnn
from .trees import TreeTables, hash_trees, unroll_trees

__all__ = [
    "ClusterConfig",
    "DiscretizeConfig",
    "DistillConfig",
    "DistilledDataset",
    "FeatureSpec",
    "GraphClassifier",
    "MiningConfig",
    "ModelConfig",
    "TrainConfig",
    "TreeTables",
    "covered_roots",
    "discretize",
    "distill",
    "evaluate",
    "graphs_nbytes",
    "hash_trees",
    "k_center_subset_of_bytes",
    "mine_patterns",
    "train_gnn",
    "unroll_trees",
    "with_covered_readout",
]
