r"""k-centre coreset of training graphs at a byte budget: a stronger equal-size baseline than a random subset.

Graphs are embedded without a model (:func:`graph_embeddings`): the mean over a graph's nodes of the
one-hot codes of every categorical feature column (the continuous features as they are), plus
:math:`\log(1 + |V|)`, so a graph is a point in the simplex of its atom types and their degrees,
charges, hydrogen counts... The k-centre greedy of Sener & Savarese (ICLR 2018) then picks graphs one
by one, each time the one farthest from the picked set,

.. math:: s_{k+1} = \arg\max_{i} \min_{j \le k} \lVert z_i - z_{s_j} \rVert_2 ,

a 2-approximation of the :math:`k` balls of smallest radius that cover every graph; it stops at the
prefix whose tensor payload (:func:`~graphdistill.mirage.distilled.graphs_nbytes`) is nearest to the
budget.
"""
from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from distillcore.checks import check_tensor

from .distilled import graphs_nbytes
from .models import FeatureSpec


def graph_embeddings(graphs: list[Data], spec: FeatureSpec) -> torch.Tensor:
    """[G, D] model-free embeddings (module docstring): mean one-hot node features and log node count.

    Args:
        graphs: PyG graphs with node features ``x`` [n_i, F].
        spec: the data set's feature spec (categorical cardinalities or the width of continuous features).
    """
    rows = []
    for g in graphs:
        if spec.cardinalities is None:
            mean = g.x.float().mean(0)
        else:
            mean = torch.cat([torch.bincount(g.x[:, j], minlength=n).float() / g.num_nodes
                              for j, n in enumerate(spec.cardinalities)])
        rows.append(torch.cat([mean, torch.tensor([np.log1p(g.num_nodes)], dtype=torch.float32)]))
    return torch.stack(rows)


def k_center_greedy(points: torch.Tensor, first: int, count: int) -> torch.Tensor:
    """[count] indices picked by the k-centre greedy (module docstring), starting at ``first``.

    Ties go to the lowest index (``argmax``). Cost :math:`O(\\text{count} \\cdot G \\cdot D)`.

    Shapes:
        points ``[G, D]`` float -> ``[count]`` int64, distinct while ``count <= G``.
    """
    check_tensor(points, "points", ndim=2, floating=True)
    if not 0 <= first < points.shape[0] or not 1 <= count <= points.shape[0]:
        raise ValueError(f"first must index the {points.shape[0]} points and count be in [1, {points.shape[0]}], "
                         f"got first={first}, count={count}")
    points = points.double()  # exact ties between equal distances, whatever the point order
    picked = [first]
    nearest = torch.cdist(points, points[first : first + 1]).view(-1)
    for _ in range(count - 1):
        nxt = int(torch.argmax(nearest))
        picked.append(nxt)
        nearest = torch.minimum(nearest, torch.cdist(points, points[nxt : nxt + 1]).view(-1))
    return torch.tensor(picked, dtype=torch.long)


def k_center_subset_of_bytes(graphs: list[Data], nbytes: int, spec: FeatureSpec, seed: int) -> list[Data]:
    """The k-centre prefix of ``graphs`` (at least 2) whose payload is nearest to ``nbytes``; ``seed`` picks the
    first centre, as a random subset's seed picks its graphs."""
    points = graph_embeddings(graphs, spec)
    first = int(np.random.default_rng(seed).integers(len(graphs)))
    sizes = np.array([graphs_nbytes([g]) for g in graphs])
    # Enough picks to pass the budget with the largest graphs, then the prefix nearest to it.
    count = min(len(graphs), int(np.ceil(nbytes / sizes.min())) + 1)
    order = k_center_greedy(points, first, count).numpy()
    total = np.cumsum(sizes[order])
    keep = max(int(np.argmin(np.abs(total - nbytes))) + 1, 2)
    return [graphs[i] for i in order[:keep]]
