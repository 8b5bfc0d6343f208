r"""GNN graph classifiers (GCN, GIN, GAT from PyG) with a readout over tree roots.

.. math::
    h_v^{(0)} = \mathrm{enc}(x_v), \quad h^{(k)} = \mathrm{ReLU}(\mathrm{conv}_k(h^{(k-1)}, E)),\quad
    \hat y_G = \mathrm{MLP}\Bigl(\tfrac{1}{|R_G|} \textstyle\sum_{v \in R_G} h_v^{(K)}\Bigr)

:math:`R_G` are the roots: on an original graph every node (each is the root of its own
computation tree), on a distilled pattern graph the roots of its trees (``root_mask``). Trees are
stored with child -> parent edges, so with :math:`K \le L` layers a root gets exactly the messages it
gets in the original graph (GIN and GAT exactly; GCN's symmetric normalisation sees degree 1 at the
leaves, the only difference).

``enc`` sums one embedding per column for integer (categorical) features — e.g. OGB atom features —
and is a linear map for floating features. Edge features are not used by these three layers; they
do shape the tree ids the miner works on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from distillcore.checks import check_choice, check_range
from torch_geometric.nn import GATConv, GCNConv, GINConv, global_mean_pool

MODELS = ("gcn", "gin", "gat")


@dataclass
class ModelConfig:
    """Architecture of the GNN classifier."""

    model: Literal["gcn", "gin", "gat"] = "gin"  # GNN layer type (MODELS)
    hidden: int = 64  # hidden width
    num_layers: int = 2  # <= the tree depth, so training trees carry all the information a layer uses
    heads: int = 4  # GAT attention heads (hidden is split across them)
    dropout: float = 0.0
    # Linear head after the mean readout: a graph's logits are then the mean of its roots' logits,
    # the same function of a bag of trees whether it is a small pattern or a whole graph.
    linear_head: bool = True

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the first field outside its range."""
        check_choice(self.model, "model", MODELS)
        check_range(self.hidden, "hidden", 1, integer=True)
        check_range(self.num_layers, "num_layers", 1, integer=True)
        check_range(self.heads, "heads", 1, integer=True)
        check_range(self.dropout, "dropout", 0, 1, high_open=True)


@dataclass
class FeatureSpec:
    """What the node-feature encoder expects: per-column cardinalities (categorical) or a width."""

    cardinalities: list[int] | None  # categorical integer features: size of each column's vocabulary
    width: int  # number of feature columns

    @staticmethod
    def of(x: torch.Tensor) -> "FeatureSpec":
        """Spec from all node features of a data set (every split, so no value is out of range)."""
        if x.is_floating_point():
            return FeatureSpec(None, x.shape[1])
        if int(x.min()) < 0:
            raise ValueError("integer node features must be >= 0 to be embedded as categories")
        return FeatureSpec([int(v) + 1 for v in x.max(dim=0).values], x.shape[1])


class NodeEncoder(nn.Module):
    """Sum of per-column embeddings (categorical features) or a linear map (continuous features)."""

    def __init__(self, spec: FeatureSpec, hidden: int):
        super().__init__()
        self.spec = spec
        if spec.cardinalities is None:
            self.linear = nn.Linear(spec.width, hidden)
        else:
            self.embeddings = nn.ModuleList(nn.Embedding(n, hidden) for n in spec.cardinalities)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, F] -> [N, hidden]
        if self.spec.cardinalities is None:
            return self.linear(x.float())
        return sum(emb(x[:, j]) for j, emb in enumerate(self.embeddings))


def _conv(config: ModelConfig) -> nn.Module:
    h = config.hidden
    if config.model == "gcn":
        return GCNConv(h, h)
    if config.model == "gin":
        return GINConv(nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h)), train_eps=True)
    if config.model == "gat":
        if h % config.heads:
            raise ValueError(f"ModelConfig.hidden={h} must be divisible by heads={config.heads}")
        return GATConv(h, h // config.heads, heads=config.heads)
    raise ValueError(f"unknown model {config.model!r}: use one of {MODELS}")


class GraphClassifier(nn.Module):
    """``num_layers`` GNN layers, mean readout over roots, two-layer MLP head."""

    def __init__(self, spec: FeatureSpec, num_classes: int, config: ModelConfig):
        super().__init__()
        if config.num_layers < 1:
            raise ValueError(f"ModelConfig.num_layers must be >= 1, got {config.num_layers}")
        self.encoder = NodeEncoder(spec, config.hidden)
        self.convs = nn.ModuleList(_conv(config) for _ in range(config.num_layers))
        self.dropout = nn.Dropout(config.dropout)
        if config.linear_head:
            self.head = nn.Linear(config.hidden, num_classes)
        else:
            self.head = nn.Sequential(nn.Linear(config.hidden, config.hidden), nn.ReLU(), nn.Linear(config.hidden, num_classes))

    def forward(
        self,
        x: torch.Tensor,  # [N, F]
        edge_index: torch.Tensor,  # [2, E]
        batch: torch.Tensor,  # [N] graph of every node
        root_mask: torch.Tensor | None = None,  # [N] bool; None: every node is a root
        num_graphs: int | None = None,
    ) -> torch.Tensor:  # [B, num_classes] logits
        h = self.encoder(x)
        for conv in self.convs:
            h = self.dropout(torch.relu(conv(h, edge_index)))
        if root_mask is not None:
            h, batch = h[root_mask], batch[root_mask]
        return self.head(global_mean_pool(h, batch, num_graphs))
