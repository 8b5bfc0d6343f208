"""Hyper-parameters of VQGraph: teacher + tokenizer, MLP student, distillation, splits and training.

Defaults follow GLNN / VQGraph's small-graph settings; the teacher variants we compared on the digits
k-NN graph (dead-code restart, EMA decay) were ranked on validation accuracy only, never on test.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Literal

Architecture = Literal["gcn", "sage", "gat"]
Setting = Literal["transductive", "inductive", "production"]
SETTINGS = ("transductive", "inductive", "production")
ARCHITECTURES = ("gcn", "sage", "gat")


@dataclass
class TeacherConfig:
    """GNN teacher with a vector-quantised bottleneck (the graph tokenizer).

    ``num_layers`` message-passing layers in total: ``num_layers - 1`` encode each node's neighbourhood
    into a code vector ``z`` (``code_dim``) that is quantised against ``codebook_size`` codes; one more
    layer classifies from the quantised codes of the node and its neighbours.
    """

    architecture: Architecture = "sage"
    hidden_dim: int = 128
    num_layers: int = 2
    dropout: float = 0.5
    gat_heads: int = 4
    codebook_size: int = 256
    code_dim: int = 64
    similarity: Literal["cosine", "l2"] = "cosine"
    commitment_weight: float = 0.25
    ema_decay: float = 0.8
    kmeans_init: bool = True
    dead_code_threshold: float = 0.0
    node_recon_weight: float = 1.0
    edge_recon_weight: float = 1.0
    # Negative (non-)edges sampled per positive edge for the structure reconstruction loss.
    negatives_per_edge: float = 1.0
    # Positive edges scored per step at most (a random subset on large graphs keeps the step O(batch)).
    max_recon_edges: int = 65536


@dataclass
class StudentConfig:
    """MLP student: ``num_layers`` linear layers; the last hidden layer also feeds a code projection."""

    hidden_dim: int = 128
    num_layers: int = 2
    dropout: float = 0.3
    norm: Literal["none", "batch", "layer"] = "none"


@dataclass
class DistillConfig:
    """Student loss ``ce_weight * CE + soft_label_weight * T^2 KL(teacher || student) + code_weight * SCA``.

    The MLP baseline uses CE only, GLNN CE + soft labels, VQGraph all three terms.
    """

    ce_weight: float = 1.0
    soft_label_weight: float = 1.0
    code_weight: float = 1.0
    temperature: float = 1.0
    code_tau: float = 0.1


@dataclass
class TrainConfig:
    """Optimisation and early stopping; the best epoch is chosen on validation accuracy only."""

    epochs: int = 300
    lr: float = 0.01
    weight_decay: float = 5e-4
    patience: int = 50
    eval_every: int = 1
    batch_size: int = 4096
    checkpoint_every: int = 25


@dataclass
class SplitConfig:
    """Random per-class split (labels are scarce, as in GLNN/VQGraph); inductive hold-out fraction."""

    train_per_class: int = 20
    val_per_class: int = 30
    inductive_fraction: float = 0.2


@dataclass
class VQGraphConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    teacher_train: TrainConfig = field(default_factory=TrainConfig)
    student_train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=0.005, weight_decay=1e-4))
    split: SplitConfig = field(default_factory=SplitConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "VQGraphConfig":
        return _from_dict(cls, values)


def _from_dict(cls, values: dict):
    kwargs = {}
    for f in fields(cls):
        if f.name not in values:
            continue
        default = f.default_factory() if callable(f.default_factory) else f.default
        kwargs[f.name] = _from_dict(type(default), values[f.name]) if is_dataclass(default) else values[f.name]
    unknown = set(values) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**kwargs)
