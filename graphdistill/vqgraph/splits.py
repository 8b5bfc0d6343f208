"""Node splits of the GLNN / VQGraph evaluation protocol.

* transductive: train / val / test nodes of one graph; every node and edge is visible in training
  (test labels are not).
* inductive: 20 % of the test nodes (``inductive_fraction``) are held out together with every edge
  that touches them; teacher and student train on the observed graph only, and are scored on the
  held-out nodes (``test_inductive``) and on the remaining observed test nodes (``test``).
* production: the inductive split, scored as ``0.8 * acc(test) + 0.2 * acc(test_inductive)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import subgraph

from distillcore.checks import check_tensor
from graphdistill.vqgraph.config import SETTINGS, SplitConfig

# Share of the transductive and inductive test accuracy in the production score (GLNN).
PRODUCTION_TRANSDUCTIVE_SHARE = 0.8


@dataclass
class NodeSplit:
    """Node ids (into the full graph) of each role; ``observed`` is everything but ``test_inductive``."""

    train: Tensor  # [n_train]
    val: Tensor  # [n_val]
    test: Tensor  # [n_test] observed test nodes
    test_inductive: Tensor  # [n_ind] held-out nodes (empty for the transductive setting)
    observed: Tensor  # [n_obs] sorted


def random_class_split(y: Tensor, num_classes: int, config: SplitConfig, generator: torch.Generator
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """``train_per_class`` and ``val_per_class`` random nodes of each class (or the shares
    ``train_fraction`` / ``val_fraction`` of it, at least one node each); the rest is test.
    Classes without nodes are skipped.

    Raises:
        ValueError: a class cannot keep a test node; the message names the flag to lower and the largest
            value that fits.
    """
    check_tensor(y, "y", ndim=1, dtype=torch.long)
    if config.train_fraction is None:
        _check_counts_fit(torch.bincount(y, minlength=num_classes), config.train_per_class, config.val_per_class)
    train, val, test = [], [], []
    for c in range(num_classes):
        members = (y == c).nonzero().view(-1)
        if members.numel() == 0:
            continue
        if config.train_fraction is not None:
            num_train = max(1, round(config.train_fraction * members.numel()))
            num_val = max(1, round(config.val_fraction * members.numel()))
            if members.numel() <= num_train + num_val:
                raise ValueError(f"class {c} has {members.numel()} nodes: --train-fraction {config.train_fraction} and "
                                 f"--val-fraction {config.val_fraction} (at least one node each) leave no test node; "
                                 "lower them (split.train_fraction, split.val_fraction)")
        else:
            num_train, num_val = config.train_per_class, config.val_per_class
        need = num_train + num_val
        members = members[torch.randperm(members.numel(), generator=generator)]
        train.append(members[:num_train])
        val.append(members[num_train:need])
        test.append(members[need:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values, torch.cat(test).sort().values


def _check_counts_fit(class_sizes: Tensor, num_train: int, num_val: int) -> None:
    """Raises unless every non-empty class gives ``num_train + num_val`` nodes and keeps one for test, i.e.
    ``num_train + num_val <= n_min - 1`` for the smallest class of ``n_min`` nodes. The message names the
    flag (and config key) to lower and the largest value that fits, for users of the CLI and of the API."""
    present = (class_sizes > 0).nonzero().view(-1)
    smallest = int(present[class_sizes[present].argmin()])
    size = int(class_sizes[smallest])
    room = size - 1  # nodes of the smallest class left for train + val after its one test node
    if num_train + num_val <= room:
        return
    problem = (f"class {smallest} has {size} nodes, fewer than --train-per-class + --val-per-class + 1 = "
               f"{num_train + num_val + 1} (one node stays for test)")
    if room < 2:
        raise ValueError(f"class {smallest} has {size} nodes: a random per-class split needs at least 3 (one "
                         "train, one validation, one test node); give the graph its own train / val / test masks")
    lower_one = [f"{flag} ({key}) to {room - other}"
                 for flag, key, other in (("--train-per-class", "split.train_per_class", num_val),
                                          ("--val-per-class", "split.val_per_class", num_train))
                 if room - other >= 1]
    if lower_one:
        raise ValueError(f"{problem}; lower {' or '.join(lower_one)}")
    # neither alone fits: keep the asked train : val ratio within the room
    train = min(room - 1, max(1, round(room * num_train / (num_train + num_val))))
    raise ValueError(f"{problem}; lower --train-per-class + --val-per-class to at most {room}, e.g. "
                     f"--train-per-class {train} --val-per-class {room - train} (split.train_per_class, "
                     "split.val_per_class)")


def make_split(data: Data, setting: str, config: SplitConfig, seed: int, *, public: bool | None = False) -> NodeSplit:
    """Builds the split of ``setting`` (see module docstring).

    Args:
        public: use the data set's own ``train_mask`` / ``val_mask`` / ``test_mask`` (Planetoid,
            ogbn-arxiv, a user's graph) instead of a random per-class split; None: the masks when the
            graph has them.
    """
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    generator = torch.Generator().manual_seed(seed)
    if public is None:
        public = all(getattr(data, key, None) is not None for key in ("train_mask", "val_mask", "test_mask"))
    if public:
        if getattr(data, "train_mask", None) is None:
            raise ValueError("public=True but the data set has no train_mask/val_mask/test_mask")
        train, val, test = (m.nonzero().view(-1) for m in (data.train_mask, data.val_mask, data.test_mask))
    else:
        train, val, test = random_class_split(data.y, int(data.num_classes), config, generator)
    held_out = torch.empty(0, dtype=torch.long)
    if setting != "transductive":
        if not 0.0 < config.inductive_fraction < 1.0:
            raise ValueError(f"inductive_fraction must lie in (0, 1), got {config.inductive_fraction}")
        order = test[torch.randperm(test.numel(), generator=generator)]
        num_held_out = max(1, round(config.inductive_fraction * test.numel()))
        held_out, test = order[:num_held_out].sort().values, order[num_held_out:].sort().values
    keep = torch.ones(data.num_nodes, dtype=torch.bool)
    keep[held_out] = False
    return NodeSplit(train, val, test, held_out, keep.nonzero().view(-1))


def observed_graph(data: Data, split: NodeSplit) -> tuple[Tensor, Tensor]:
    """Features [n_obs, F] and edges [2, E_obs] (ids relabelled to ``0..n_obs-1`` in ``split.observed``
    order) of the graph visible during training: held-out nodes and all their edges are removed."""
    edge_index, _ = subgraph(split.observed, data.edge_index, relabel_nodes=True, num_nodes=data.num_nodes)
    return data.x[split.observed], edge_index


def to_observed_ids(split: NodeSplit, nodes: Tensor, num_nodes: int) -> Tensor:
    """Maps node ids of the full graph to their positions in ``split.observed``."""
    position = torch.full((num_nodes,), -1, dtype=torch.long)
    position[split.observed] = torch.arange(split.observed.numel())
    local = position[nodes]
    if bool((local < 0).any()):
        raise ValueError("some nodes are held out (inductive) and have no observed id")
    return local


def production_score(transductive_acc: float, inductive_acc: float) -> float:
    """GLNN's production metric: ``0.8 * transductive + 0.2 * inductive`` test accuracy."""
    return PRODUCTION_TRANSDUCTIVE_SHARE * transductive_acc + (1 - PRODUCTION_TRANSDUCTIVE_SHARE) * inductive_acc
