"""Training GNN classifiers on a graph set with per-graph sampling weights; evaluation on graphs.

One loop serves the full data set (all weights 1), a random subset, and the distilled set, whose
pattern graphs are drawn with probability proportional to their weight
(``DistilledDataset.sampling_weights``: frequency-based), by ``WeightedRandomSampler`` with
replacement. The Mirage reference code builds such weights and then
overwrites them with uniform sampling; here the sampler is the only source of batches, and a test
checks that a zero-weight pattern is never seen.

Model selection uses the validation ROC-AUC; the test metrics are those of the selected epoch.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch.utils.data import WeightedRandomSampler
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from tqdm import tqdm

from distillcore.checks import check_positive, check_tensor

from .models import FeatureSpec, GraphClassifier, ModelConfig


@dataclass
class TrainConfig:
    """Optimisation settings (the same for full, random-subset and distilled training)."""

    epochs: int = 40
    samples_per_epoch: int = 1024  # graphs drawn per epoch: equal optimisation steps for every training set
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    eval_batch_size: int = 256
    seed: int = 0
    progress: bool = False


@dataclass
class TrainResult:
    model: GraphClassifier
    best_epoch: int
    val: dict[str, float]
    test: dict[str, float]
    history: list[float] = field(default_factory=list)  # validation ROC-AUC per epoch


def weighted_loader(graphs: list[Data], weights: torch.Tensor, batch_size: int, num_samples: int, generator: torch.Generator) -> DataLoader:
    """Batches of graphs drawn with replacement with probability ``weights / weights.sum()``."""
    check_tensor(weights, "weights", shape=(len(graphs),), floating=True)
    if bool((weights < 0).any()) or not bool((weights > 0).any()):
        raise ValueError("weights must be >= 0 with at least one positive entry")
    sampler = WeightedRandomSampler(weights, num_samples, replacement=True, generator=generator)
    return DataLoader(graphs, batch_size=batch_size, sampler=sampler)


@torch.no_grad()
def predict_proba(model: GraphClassifier, graphs: list[Data], batch_size: int) -> torch.Tensor:
    """[G, C] class probabilities; ``root_mask`` graphs pool their roots, others all nodes."""
    model.eval()
    out = []
    for batch in DataLoader(graphs, batch_size=batch_size, shuffle=False):
        logits = model(batch.x, batch.edge_index, batch.batch, getattr(batch, "root_mask", None), batch.num_graphs)
        out.append(torch.softmax(logits, dim=-1))
    return torch.cat(out)


def classification_metrics(labels: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy and ROC-AUC (binary: of class 1; multi-class: macro one-vs-rest)."""
    accuracy = float((proba.argmax(1) == labels).mean())
    if proba.shape[1] == 2:
        auc = roc_auc_score(labels, proba[:, 1])
    else:
        auc = roc_auc_score(labels, proba, multi_class="ovr", average="macro", labels=np.arange(proba.shape[1]))
    return {"accuracy": accuracy, "roc_auc": float(auc)}


def evaluate(model: GraphClassifier, graphs: list[Data], batch_size: int = 256) -> dict[str, float]:
    labels = np.array([int(g.y) for g in graphs])
    return classification_metrics(labels, predict_proba(model, graphs, batch_size).numpy())


def train_gnn(
    train_graphs: list[Data],
    weights: torch.Tensor | None,  # [G] sampling weights; None: uniform
    val_graphs: list[Data],
    test_graphs: list[Data],
    spec: FeatureSpec,
    num_classes: int,
    model_config: ModelConfig,
    config: TrainConfig,
) -> TrainResult:
    """Trains a GNN, keeps the epoch with the best validation ROC-AUC, reports its test metrics."""
    if not train_graphs or not val_graphs:
        raise ValueError(f"need training and validation graphs, got {len(train_graphs)} and {len(val_graphs)}")
    for name in ("epochs", "samples_per_epoch", "batch_size", "lr"):
        check_positive(getattr(config, name), f"TrainConfig.{name}")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    weights = torch.ones(len(train_graphs), dtype=torch.float64) if weights is None else weights.double()
    loader = weighted_loader(train_graphs, weights, config.batch_size, config.samples_per_epoch, generator)
    model = GraphClassifier(spec, num_classes, model_config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best_auc, best_epoch, best_state, history = -1.0, -1, None, []
    for epoch in tqdm(range(config.epochs), desc=f"train {model_config.model}", disable=not config.progress):
        model.train()
        for batch in loader:
            optimizer.zero_grad()
            logits = model(batch.x, batch.edge_index, batch.batch, getattr(batch, "root_mask", None), batch.num_graphs)
            F.cross_entropy(logits, batch.y.view(-1)).backward()
            optimizer.step()
        val_auc = evaluate(model, val_graphs, config.eval_batch_size)["roc_auc"]
        history.append(val_auc)
        if val_auc > best_auc:
            best_auc, best_epoch, best_state = val_auc, epoch, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return TrainResult(
        model, best_epoch, evaluate(model, val_graphs, config.eval_batch_size), evaluate(model, test_graphs, config.eval_batch_size) if test_graphs else {}, history
    )
