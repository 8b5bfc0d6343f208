"""One VQGraph experiment: split, teacher + tokenizer, MLP / GLNN / VQGraph students, evaluation.

Transductive: everything trains on the full graph; accuracies are on the test nodes.
Inductive / production: teacher and students train on the observed graph (held-out test nodes and
their edges removed, see ``splits``); the teacher then classifies held-out nodes with the full graph
(they arrive with their edges), the students from their features alone. Reported: ``test``
(observed test nodes), ``test_inductive`` (held-out nodes) and ``production`` (0.8 / 0.2 mix).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch_geometric.data import Data

from distillcore.dist import DEFAULT_TIMEOUT_S
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
    nproc: int = 1,
    dist_timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ExperimentResult:
    """Trains the teacher and the requested students in ``setting`` and scores them (module docstring).

    Args:
        data: any node-classification graph: a PyG ``Data(x, edge_index, y)`` or a dict of those
            tensors (checked by :func:`graphdistill.data.node.as_node_graph`; ``num_classes``
            defaults to ``max(y) + 1``).
        public_split: True: the graph's ``train_mask`` / ``val_mask`` / ``test_mask``; False: a random
            per-class split of sizes ``config.split``; None: the masks when the graph has them.
        nproc: local ranks for the sampled stages when ``config.minibatch.fanouts`` is set: the teacher
            trains on neighbour-sampled mini-batches, its targets come from chunked layer-wise
            inference written under ``checkpoint_dir`` (a temporary folder without it), students read
            them memory-mapped (``graphdistill.vqgraph.scaled``).
        dist_timeout_s: seconds a rank waits for the others before the job fails.
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

    sampled = config.minibatch.enabled
    if sampled:
        from graphdistill.sampling import CSRGraph
        from graphdistill.vqgraph.scaled import exact_teacher_logits, train_student_scaled, train_teacher_scaled

        if config.minibatch.batch_size > num_nodes:
            raise ValueError(f"minibatch.batch_size (--batch-size) {config.minibatch.batch_size} is larger than the "
                             f"graph ({num_nodes} nodes)")
        scratch = None if checkpoint_dir is not None else tempfile.TemporaryDirectory(prefix="vqgraph-")
        work = Path(checkpoint_dir if checkpoint_dir is not None else scratch.name) / "teacher_targets"
        teacher = train_teacher_scaled(x_obs, CSRGraph.from_edge_index(edge_obs, x_obs.size(0)), y_obs, train_local,
                                       val_local, num_classes, config, work, nproc=nproc,
                                       dist_timeout_s=dist_timeout_s, seed=seed,
                                       checkpoint=ckpt("teacher"), progress=progress)
    else:
        teacher = train_teacher(x_obs, edge_obs, y_obs, train_local, val_local, num_classes, config.teacher,
                                config.teacher_train, seed=seed, checkpoint=ckpt("teacher"), progress=progress)
    scores = {"teacher": _scores(teacher.targets.logits, y_obs, val_local, test_local)}
    if split.test_inductive.numel():
        with torch.no_grad():
            if sampled:  # whole neighbourhoods of the held-out nodes only, not a full-graph forward
                held_logits = exact_teacher_logits(teacher.model, data.x, CSRGraph.from_edge_index(
                    data.edge_index, data.num_nodes), split.test_inductive)
            else:
                held_logits = teacher.model(data.x, data.edge_index).logits[split.test_inductive]
        _add_inductive(scores["teacher"], held_logits, data.y[split.test_inductive])

    trained: dict[str, MLPStudent] = {}
    best_epochs = {"teacher": teacher.fit.best_epoch}
    for mode in students:
        if sampled:
            student, result = train_student_scaled(
                x_obs, y_obs, train_local, val_local, num_classes, mode, config, teacher, work, nproc=nproc,
                dist_timeout_s=dist_timeout_s,
                seed=seed, checkpoint=ckpt(f"student_{mode}"), progress=progress)
        else:
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
