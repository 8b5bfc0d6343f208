"""The teacher's message-passing layers on sampled bipartite blocks (mini-batch training, chunked inference).

A block (``graphdistill.sampling.Block``) has ``num_src`` input rows and ``num_dst <= num_src`` output
rows, the targets being the first ``num_dst`` sources; each layer returns the ``num_dst`` rows only.
SAGE and GAT take the pair ``(h, h[:num_dst])`` (GAT adds the self loop ``i -> i`` of each target).

GCN with global degrees: the full-graph layer is
:math:`h'_u = \\sum_{v \\in \\mathcal{N}(u) \\cup \\{u\\}} \\frac{1}{\\sqrt{(d_u + 1)(d_v + 1)}} W h_v`
with the in-degrees :math:`d` of the *whole* graph. On a block whose target ``u`` kept a uniform subset
:math:`S(u)` of its neighbours, each kept message is scaled by :math:`d_u / |S(u)|`, an unbiased
estimate of the neighbour sum (GraphSAGE's sampling estimator), and the self loop keeps its weight
:math:`1 / (d_u + 1)`:

.. math::
    h'_u = \\frac{W h_u}{d_u + 1} + \\frac{d_u}{|S(u)|} \\sum_{v \\in S(u)} \\frac{W h_v}{\\sqrt{(d_u + 1)(d_v + 1)}}.

Degrees taken on the sampled block instead would change the layer itself (a node with 500
neighbours would be normalised as one with 10). With all neighbours kept (``|S(u)| = d_u``, chunked
inference) the formula is the full-graph layer exactly.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import GCNConv

from graphdistill.sampling import Block


def gcn_block_weights(
    block: Block,
    n_id: Tensor,  # [>= num_src] global ids of the block's rows
    degree: Tensor,  # [N] global in-degrees
) -> tuple[Tensor, Tensor]:  # edge_index with self loops [2, E + num_dst], weights [E + num_dst]
    """The block's edges plus one self loop per target, weighted as in the module docstring."""
    src, dst = block.edge_index
    deg_src = degree[n_id[src]].double()
    deg_dst_all = degree[n_id[: block.num_dst]].double()
    kept = torch.bincount(dst, minlength=block.num_dst).double()
    scale = deg_dst_all / kept.clamp_min(1.0)
    deg_dst = deg_dst_all[dst]
    weight = scale[dst] / torch.sqrt((deg_dst + 1.0) * (deg_src + 1.0))
    loops = torch.arange(block.num_dst)
    edge_index = torch.cat([block.edge_index, torch.stack([loops, loops])], dim=1)
    return edge_index, torch.cat([weight, 1.0 / (deg_dst_all + 1.0)]).float()


def block_conv(
    conv: nn.Module,
    h: Tensor,  # [num_src, F] input rows of the block
    block: Block,
    gcn_weights: tuple[Tensor, Tensor] | None = None,  # from gcn_block_weights, GCN only
) -> Tensor:  # [num_dst, F']
    """One of the teacher's PyG layers on a block (module docstring)."""
    size = (block.num_src, block.num_dst)
    if isinstance(conv, GCNConv):
        if gcn_weights is None:
            raise ValueError("a GCN layer on a block needs the global-degree weights (gcn_block_weights)")
        # GCNConv.forward with normalize=False, restricted to the targets: lin, weighted sum, bias
        edge_index, weight = gcn_weights
        out = conv.propagate(edge_index, x=conv.lin(h), edge_weight=weight, size=size)
        return out if conv.bias is None else out + conv.bias
    return conv((h, h[: block.num_dst]), block.edge_index, size=size)


__all__ = ["block_conv", "gcn_block_weights"]
