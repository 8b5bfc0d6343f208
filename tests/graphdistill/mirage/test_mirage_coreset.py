"""k-centre coreset: the greedy against a brute-force reference, the embeddings by hand, the byte budget."""
import itertools

import numpy as np
import pytest
import torch

from graphdistill.data.graphs import load_solubility, molecule_graph
from graphdistill.mirage.coreset import graph_embeddings, k_center_greedy, k_center_subset_of_bytes
from graphdistill.mirage.distilled import graphs_nbytes
from graphdistill.mirage.models import FeatureSpec


def brute_k_center(points: np.ndarray, first: int, count: int) -> list[int]:
    """The greedy written out with Python loops over every pair."""
    picked = [first]
    while len(picked) < count:
        best, best_d = None, -1.0
        for i in range(len(points)):
            d = min(float(np.sqrt(((points[i] - points[j]) ** 2).sum())) for j in picked)
            if d > best_d:
                best, best_d = i, d
        picked.append(best)
    return picked


def cover_radius(points: np.ndarray, centres) -> float:
    return max(min(np.linalg.norm(p - points[c]) for c in centres) for p in points)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k_center_greedy_matches_brute_force_and_2_approximation(seed):
    points = np.random.default_rng(seed).normal(size=(12, 3))
    got = k_center_greedy(torch.from_numpy(points).float(), 3, 4).tolist()
    assert got == brute_k_center(points, 3, 4)
    # Gonzalez's bound: the greedy radius is at most twice the optimum over all 4-subsets.
    optimum = min(cover_radius(points, c) for c in itertools.combinations(range(12), 4))
    assert cover_radius(points, got) <= 2 * optimum + 1e-9


def test_graph_embeddings_by_hand():
    g = molecule_graph("CCO", 0, "t")  # atoms C, C, O
    spec = FeatureSpec.of(g.x)
    z = graph_embeddings([g], spec)[0]
    atomic = z[: spec.cardinalities[0]]
    assert atomic[6] == pytest.approx(2 / 3) and atomic[8] == pytest.approx(1 / 3) and atomic.sum() == pytest.approx(1)
    assert z.numel() == sum(spec.cardinalities) + 1 and z[-1] == pytest.approx(np.log1p(3))


def test_k_center_subset_has_the_budget_and_spreads_out():
    splits = load_solubility()
    spec = FeatureSpec.of(torch.cat([g.x for g in splits.all_graphs()]))
    budget = 30_000
    subset = k_center_subset_of_bytes(splits.train, budget, spec, seed=0)
    one_graph = max(graphs_nbytes([g]) for g in subset)
    assert abs(graphs_nbytes(subset) - budget) <= one_graph
    assert len({id(g) for g in subset}) == len(subset)
    # Farther apart than a random subset of the same size (the point of the baseline).
    z = graph_embeddings(splits.train, spec)
    index = {id(g): i for i, g in enumerate(splits.train)}
    chosen = [index[id(g)] for g in subset]
    random = np.random.default_rng(0).choice(len(splits.train), len(chosen), replace=False)
    radius = lambda c: torch.cdist(z, z[c]).min(1).values.max()
    assert radius(chosen) < radius(random)
    with pytest.raises(ValueError, match="count be in"):
        k_center_greedy(z, 0, 0)
