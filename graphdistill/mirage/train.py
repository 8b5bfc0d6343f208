"""Training GNN classifiers on a graph set with per-graph sampling weights; evaluation on graphs.

One loop serves the full data set (all weights 1), a random subset, and the distilled set, whose
pattern graphs are drawn with probability proportional to their weight
(``DistilledDataset.sampling_weights``: readout-mass based), by ``WeightedRandomSampler`` with
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

from distillcore.checks import check_range, check_tensor
from distillcore.determinism import deterministic_algorithms
from distillcore.divergence import check_finite

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

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the first field outside its range; ``train_gnn`` calls it again."""
        for name in ("epochs", "samples_per_epoch", "batch_size", "eval_batch_size"):
            check_range(getattr(self, name), name, 1, integer=True)
        check_range(self.lr, "lr", 0, low_open=True)
        check_range(self.weight_decay, "weight_decay", 0)
        check_range(self.seed, "seed", 0, integer=True)


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
    config.validate()
    model_config.validate()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    weights = torch.ones(len(train_graphs), dtype=torch.float64) if weights is None else weights.double()
    loader = weighted_loader(train_graphs, weights, config.batch_size, config.samples_per_epoch, generator)
    model = GraphClassifier(spec, num_classes, model_config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best_auc, best_epoch, best_state, history = -1.0, -1, None, []
    for epoch in tqdm(range(config.epochs), desc=f"train {model_config.model}", disable=not config.progress):
        model.train()
        with deterministic_algorithms():  # a fixed seed repeats bit for bit (see distillcore.determinism)
            for batch in loader:
                optimizer.zero_grad()
                logits = model(batch.x, batch.edge_index, batch.batch, getattr(batch, "root_mask", None),
                               batch.num_graphs)
                loss = F.cross_entropy(logits, batch.y.view(-1))
                check_finite(epoch + 1, loss, hint="lower the learning rate (--lr)")  # epoch: the unit users see
                loss.backward()
                optimizer.step()
        val_auc = evaluate(model, val_graphs, config.eval_batch_size)["roc_auc"]
        history.append(val_auc)
        if val_auc > best_auc:
            best_auc, best_epoch, best_state = val_auc, epoch, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return TrainResult(
        model, best_epoch, evaluate(model, val_graphs, config.eval_batch_size), evaluate(model, test_graphs, config.eval_batch_size) if test_graphs else {}, history
    )


def check_feature_compatible(graphs: list[Data], spec: FeatureSpec, has_edge_features: bool, where: str,
                             num_classes: int | None = None) -> None:
    """Evaluation graphs must carry the features the distilled set was built from: the same number of
    node-feature columns, categorical values inside the stored vocabularies, edge features iff the set has
    them, and (given ``num_classes``) labels of its classes."""
    for i, g in enumerate(graphs):
        if num_classes is not None and not 0 <= int(g.y) < num_classes:
            raise ValueError(f"{where} graph {i} has label {int(g.y)}; the distilled set has classes 0..{num_classes - 1}")
        if g.x.size(1) != spec.width:
            raise ValueError(f"{where} graph {i} has {g.x.size(1)} node-feature columns; the distilled set was "
                             f"built from {spec.width}")
        if spec.cardinalities is not None:
            if g.x.is_floating_point():
                raise ValueError(f"{where} graph {i} has float node features; the distilled set's are categorical")
            too_big = (g.x >= torch.tensor(spec.cardinalities)).any(0)
            if bool(too_big.any()) or int(g.x.min()) < 0:
                raise ValueError(f"{where} graph {i}: node-feature values outside the distilled set's vocabulary "
                                 f"(columns {too_big.nonzero().view(-1).tolist()}): evaluate on the graphs it came from")
        if (getattr(g, "edge_attr", None) is not None) != has_edge_features:
            raise ValueError(f"{where} graph {i} {'has' if not has_edge_features else 'lacks'} edge features "
                             f"(edge_attr) but the distilled set {'does not' if not has_edge_features else 'does'}")


def evaluation_splits(meta: dict, dataset_file: str | None = None, root: str | None = None):
    """The validation and test graphs of a distilled set, from its own record of where it came from.

    ``meta["source"]`` (written by :func:`~graphdistill.mirage.distill.distill`) names a built-in set
    (reloaded by name from ``root`` or the recorded root) or a graph file (re-read and re-split with the
    recorded split); ``dataset_file`` overrides it (a list of graphs, split as recorded, or a dict with
    its own train / val / test). A set distilled from graphs given to the API needs ``dataset_file``.
    Files of older versions (``meta["dataset"]``, ``split_seed``) load as built-in sets.
    """
    from ..data.graphs import SplitConfig, load_graph_dataset, load_graph_file

    source = meta.get("source") or {"kind": "builtin", "name": meta["dataset"], "root": meta.get("root"),
                                    "split": {"seed": meta.get("split_seed", 0)}}
    split = SplitConfig(**source.get("split", {}))
    if dataset_file is not None:
        return load_graph_file(dataset_file, split)
    if source["kind"] == "file":
        try:
            return load_graph_file(source["path"], split)
        except FileNotFoundError:
            raise FileNotFoundError(f"the graph file this set was distilled from, {source['path']}, is gone: pass "
                                    "the evaluation graphs with --dataset-file") from None
    if source["kind"] == "builtin":
        return load_graph_dataset(source["name"], root or source.get("root"), split)
    raise ValueError("this set was distilled from graphs given to the Python API: pass the evaluation graphs "
                     "with --dataset-file (a torch.save file of a list of dicts of tensors, or of a dict with "
                     "train / val / test lists)")
