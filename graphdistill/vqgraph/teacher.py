"""GNN teacher with a vector-quantised structure codebook (VQGraph's graph tokenizer).

.. math::
    z_i = W_c\\, \\mathrm{GNN}_{1..L-1}(X, A)_i, \\qquad
    k_i = \\operatorname{argmax}_k \\mathrm{sim}(z_i, c_k), \\qquad
    \\hat y = \\mathrm{softmax}\\big(W_o\\, \\mathrm{GNN}_L(Z_q, A)\\big),

with :math:`Z_q` the straight-through quantised codes :math:`c_{k_i}`. Each code summarises a node's
(L-1)-hop neighbourhood; the decoders reconstruct the node features and the graph structure from
:math:`Z_q` so that the codes keep local structure, and the loss is

.. math::
    \\mathcal{L} = \\mathrm{CE} + \\lambda_{node} \\mathcal{L}_{node} + \\lambda_{edge} \\mathcal{L}_{edge}
        + \\mathcal{L}_{commit}.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, SAGEConv

from distillcore.checks import check_tensor
from distillcore.quantize import QuantizerConfig, VectorQuantizer
from graphdistill.vqgraph.config import ARCHITECTURES, TeacherConfig
from graphdistill.vqgraph.reconstruction import edge_reconstruction_loss, feature_reconstruction_loss


@dataclass
class TeacherOutput:
    logits: Tensor  # [N, C]
    embedding: Tensor  # [N, code_dim] pre-quantisation code vectors z (soft code assignment targets)
    quantized: Tensor  # [N, code_dim] straight-through quantised codes
    indices: Tensor  # [N] code id of each node
    commit_loss: Tensor  # []


def make_conv(architecture: str, in_dim: int, out_dim: int, gat_heads: int) -> nn.Module:
    """One PyG message-passing layer ``in_dim -> out_dim``."""
    if architecture == "gcn":
        return GCNConv(in_dim, out_dim)
    if architecture == "sage":
        return SAGEConv(in_dim, out_dim)
    if architecture == "gat":
        if out_dim % gat_heads:
            raise ValueError(f"GAT needs hidden_dim divisible by gat_heads, got {out_dim} and {gat_heads}")
        return GATConv(in_dim, out_dim // gat_heads, heads=gat_heads)
    raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")


class VQGNNTeacher(nn.Module):
    """GCN / GraphSAGE / GAT teacher with a codebook bottleneck and feature + structure decoders."""

    def __init__(self, in_dim: int, num_classes: int, config: TeacherConfig):
        super().__init__()
        if config.num_layers < 2:
            raise ValueError(f"num_layers must be >= 2 (encoder layers before the codebook + one after), got {config.num_layers}")
        self.config = config
        self.in_dim = in_dim
        self.num_classes = num_classes
        dims = [in_dim] + [config.hidden_dim] * (config.num_layers - 1)
        self.encoder = nn.ModuleList(
            make_conv(config.architecture, d_in, d_out, config.gat_heads) for d_in, d_out in zip(dims[:-1], dims[1:])
        )
        self.to_code = nn.Linear(config.hidden_dim, config.code_dim)
        self.quantizer = VectorQuantizer(QuantizerConfig(
            codebook_size=config.codebook_size,
            dim=config.code_dim,
            similarity=config.similarity,
            commitment_weight=config.commitment_weight,
            update="ema",
            ema_decay=config.ema_decay,
            kmeans_init=config.kmeans_init,
            dead_code_threshold=config.dead_code_threshold,
        ))
        self.head = make_conv(config.architecture, config.code_dim, config.hidden_dim, config.gat_heads)
        self.classifier = nn.Linear(config.hidden_dim, num_classes)
        self.feature_decoder = nn.Sequential(
            nn.Linear(config.code_dim, config.hidden_dim), nn.ReLU(), nn.Linear(config.hidden_dim, in_dim)
        )
        self.edge_decoder = nn.Linear(config.code_dim, config.code_dim)

    @property
    def codebook(self) -> Tensor:  # [K, code_dim]
        return self.quantizer.codebook

    def forward(
        self,
        x: Tensor,  # [N, F]
        edge_index: Tensor,  # [2, E]
    ) -> TeacherOutput:
        check_tensor(x, "x", shape=[None, self.in_dim], floating=True)
        check_tensor(edge_index, "edge_index", shape=[2, None], dtype=torch.long, nonempty=False)
        h = x
        for conv in self.encoder:
            h = F.dropout(F.relu(conv(h, edge_index)), self.config.dropout, self.training)
        z = self.to_code(h)
        quantized = self.quantizer(z)
        h = F.dropout(F.relu(self.head(quantized.quantized, edge_index)), self.config.dropout, self.training)
        return TeacherOutput(self.classifier(h), z, quantized.quantized, quantized.indices, quantized.commit_loss)

    def tokenizer_loss(self, output: TeacherOutput, x: Tensor, edge_index: Tensor) -> dict[str, Tensor]:
        """Weighted reconstruction and commitment terms (the CE term is added by the trainer)."""
        cfg = self.config
        node = feature_reconstruction_loss(self.feature_decoder(output.quantized), x)
        edge = edge_reconstruction_loss(
            self.edge_decoder(output.quantized), edge_index, cfg.negatives_per_edge, cfg.max_recon_edges
        )
        return {
            "node_recon": cfg.node_recon_weight * node,
            "edge_recon": cfg.edge_recon_weight * edge,
            "commit": output.commit_loss,
        }
