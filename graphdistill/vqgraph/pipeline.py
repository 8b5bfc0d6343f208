"""One VQGraph experiment: split, teacher + tokenizer, MLP / GLNN / VQGraph students, evaluation.

Transductive: everything trains on the full graph; accuracies are on the test nodes.
Inductive / production: teacher and students train on the observed graph (held-out test nodes and
their edges removed, see ``splits``); the teacher then classifies held-out nodes with the full graph
(they arrive with their edges), the students from their features alone. Reported: ``test``
(observed test nodes), ``test_inductive`` (held-out nodes) and ``production`` (0.8 / 0.2 mix).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch_geometric.data import Data

from graphdistill.data.node import as_node_graph, count_isolated
from graphdistill.vqgraph.config import VQGraphConfig
from graphdistill.vqgraph.splits import make_split, observed_graph, production_score, to_observed_ids
from graphdistill.vqgraph.student import MLPStudent
from graphdistill.vqgraph.teacher import VQGNNTeacher
from graphdistill.vqgraph.trainer import STUDENT_MODES, accuracy, train_student, train_teacher

METHODS = ("teacher",) + STUDENT_MODES


@dataclass
class ExperimentResult:
    setting: str
    seed: int
    accuracy: dict[str, dict[str, float]]  # method -> {"val", "test", ["test_inductive", "production"]}
    codebook: dict  # codes_used, perplexity
    best_epochs: dict[str, int]
    teacher: VQGNNTeacher
    students: dict[str, MLPStudent] = field(default_factory=dict)
    isolated_nodes: int = 0


def run_experiment(
    data: Data | dict,
    setting: str,
    config: VQGraphConfig,
    seed: int = 0,
    *,
    students: tuple[str, ...] = STUDENT_MODES,
    public_split: bool | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> ExperimentResult:
    """Trains the teacher and the requested students in ``setting`` and scores them (module docstring).

    Args:
        data: any node-classification graph: a PyG ``Data(x, edge_index, y)`` or a dict of those
            tensors (checked by :func:`graphdistill.data.node.as_node_graph`; ``num_classes``
            defaults to ``max(y) + 1``).
        public_split: True: the graph's ``train_mask`` / ``val_mask`` / ``test_mask``; False: a random
            per-class split of sizes ``config.split``; None: the masks when the graph has them.
    Shapes:
        x [N, F] float, edge_index [2, E] int64 in [0, N), y [N] int64.
    """
    data = as_node_graph(data)
    config.validate()  # fields set after construction bypass __post_init__
    split = make_split(data, setting, config.split, seed, public=public_split)
    x_obs, edge_obs = observed_graph(data, split)
    y_obs = data.y[split.observed]
    num_nodes, num_classes = data.num_nodes, int(data.num_classes)
    train_local, val_local, test_local = (to_observed_ids(split, ids, num_nodes) for ids in (split.train, split.val, split.test))

    def ckpt(name: str):
        return None if checkpoint_dir is None else Path(checkpoint_dir) / f"{name}.ckpt"

    teacher = train_teacher(x_obs, edge_obs, y_obs, train_local, val_local, num_classes, config.teacher,
                            config.teacher_train, seed=seed, checkpoint=ckpt("teacher"), progress=progress)
    scores = {"teacher": _scores(teacher.targets.logits, y_obs, val_local, test_local)}
    if split.test_inductive.numel():
        with torch.no_grad():
            full_logits = teacher.model(data.x, data.edge_index).logits
        _add_inductive(scores["teacher"], full_logits[split.test_inductive], data.y[split.test_inductive])

    trained: dict[str, MLPStudent] = {}
    best_epochs = {"teacher": teacher.fit.best_epoch}
    for mode in students:
        student, result = train_student(
            x_obs, y_obs, train_local, val_local, num_classes, mode, config.student, config.distill,
            config.student_train, teacher.targets if mode != "mlp" else None, seed=seed,
            checkpoint=ckpt(f"student_{mode}"), progress=progress,
        )
        with torch.no_grad():
            scores[mode] = _scores(student(x_obs), y_obs, val_local, test_local)
            if split.test_inductive.numel():
                _add_inductive(scores[mode], student(data.x[split.test_inductive]), data.y[split.test_inductive])
        trained[mode], best_epochs[mode] = student, result.best_epoch
    return ExperimentResult(setting, seed, scores, teacher.codebook_usage, best_epochs, teacher.model, trained,
                            count_isolated(data))


def _scores(logits, y, val, test) -> dict[str, float]:
    return {"val": accuracy(logits[val], y[val]), "test": accuracy(logits[test], y[test])}


def _add_inductive(scores: dict[str, float], logits, labels) -> None:
    scores["test_inductive"] = accuracy(logits, labels)
    scores["production"] = production_score(scores["test"], scores["test_inductive"])


def headline(result: ExperimentResult) -> dict[str, float]:
    """The number each setting is judged on: test (transductive), test_inductive, or production."""
    key = {"transductive": "test", "inductive": "test_inductive", "production": "production"}[result.setting]
    return {method: scores[key] for method, scores in result.accuracy.items()}


__all__ = ["ExperimentResult", "METHODS", "headline", "run_experiment"]
