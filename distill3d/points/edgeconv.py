"""Dynamic EdgeConv (Wang et al., 2019, DGCNN) over a given kNN graph, as a distillation adapter.

For a centre :math:`i` with neighbours :math:`\\mathcal N(i)` (its k nearest in *teacher* feature
space, found anew for every batch: the graph is dynamic),

.. math::
    x'_i = \\max_{j \\in \\mathcal N(i)} h_\\Theta\\big([\\,x_i,\\; x_j - x_i\\,]\\big)

with :math:`h_\\Theta` a small MLP. ``aggregate=False`` returns the edge features
:math:`h_\\Theta([x_i, x_j - x_i])` of every neighbour, ``[B, N, k, C']``, unpooled (the PointDistiller
reference matches its teacher and student local graphs edge by edge).

PyTorch Geometric's ``EdgeConv`` implements the same formula but its ``DynamicEdgeConv`` builds the
graph with ``knn`` from pyg-lib / torch-cluster, which cannot be installed here; the graph comes from
:func:`distill3d.points.sampling.knn` instead and the aggregation is a dense gather + max over
``[B, N, k, C]``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from distill3d.points.sampling import gather_rows
from distillcore.checks import check_tensor


class EdgeConv(nn.Module):
    """``in_channels`` -> ``out_channels`` EdgeConv; ``hidden`` sets the MLP's inner widths
    (``()`` gives a single linear layer)."""

    def __init__(self, in_channels: int, out_channels: int, hidden: tuple[int, ...] = ()):
        super().__init__()
        self.in_channels = in_channels
        widths = [2 * in_channels, *hidden]
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(cin, cout, bias=False), nn.LayerNorm(cout), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(widths[-1], out_channels))
        self.mlp = nn.Sequential(*layers)

    def forward(
        self,
        features: Tensor,  # [B, M, C] all local features
        centres: Tensor,  # [B, N] long, indices of the centres into M
        neighbours: Tensor,  # [B, N, k] long, indices into M
        aggregate: bool = True,
    ) -> Tensor:  # [B, N, out_channels], or [B, N, k, out_channels] without aggregation
        check_tensor(features, "features", ndim=3, floating=True)
        if features.shape[-1] != self.in_channels:
            raise ValueError(f"EdgeConv expects {self.in_channels}-channel features, got {features.shape[-1]}")
        edge = self.mlp(edge_inputs(features, centres, neighbours))
        return edge.amax(dim=2) if aggregate else edge


def edge_inputs(
    features: Tensor,  # [B, M, C]
    centres: Tensor,  # [B, N] long
    neighbours: Tensor,  # [B, N, k] long
) -> Tensor:  # [B, N, k, 2C]
    """The input of :math:`h_\\Theta` for every edge: :math:`[x_i, x_j - x_i]`."""
    x_i = gather_rows(features, centres)[:, :, None, :]  # [B, N, 1, C]
    x_j = gather_rows(features, neighbours)  # [B, N, k, C]
    return torch.cat([x_i.expand_as(x_j), x_j - x_i], dim=-1)


__all__ = ["EdgeConv", "edge_inputs"]
