"""CSR graph and uniform neighbour sampler: real neighbours, fan-out, no replacement, seeding, uniformity."""
import math

import pytest
import torch
from torch_geometric.utils import to_undirected

from graphdistill.datasets import SBMConfig, sbm_graph
from graphdistill.sampling import CSRGraph, NeighborSampler, check_fanouts, sample_neighbors

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def graph():
    data = sbm_graph(SBMConfig(num_nodes=2000, num_blocks=4, avg_degree=12, feature_dim=4), seed=1)
    return data, CSRGraph.from_edge_index(data.edge_index, data.num_nodes)


def neighbour_sets(data):
    sets = [set() for _ in range(data.num_nodes)]
    for s, t in data.edge_index.t().tolist():
        sets[t].add(s)
    return sets


def test_csr_round_trip_and_edge_queries(graph):
    data, csr = graph
    assert csr.num_edges == data.edge_index.size(1)
    back = csr.to_edge_index()
    assert set(map(tuple, back.t().tolist())) == set(map(tuple, data.edge_index.t().tolist()))
    assert torch.equal(csr.degree(), torch.bincount(data.edge_index[1], minlength=data.num_nodes))
    pairs = torch.randint(0, data.num_nodes, (2, 5000))
    edges = set(map(tuple, data.edge_index.t().tolist()))
    expected = torch.tensor([(s, t) in edges for s, t in pairs.t().tolist()])
    assert torch.equal(csr.has_edges(pairs[0], pairs[1]), expected)
    assert bool(csr.has_edges(data.edge_index[0], data.edge_index[1]).all())


def test_sampled_blocks_hold_real_distinct_neighbours_within_fanout(graph):
    data, csr = graph
    nbrs = neighbour_sets(data)
    seeds = torch.randperm(data.num_nodes)[:64]
    fanouts = (4, 3)
    batch = NeighborSampler(csr, fanouts).sample(seeds, torch.Generator().manual_seed(0))
    assert torch.equal(batch.n_id[:64], seeds) and batch.n_id.unique().numel() == batch.n_id.numel()
    assert [b.num_dst for b in batch.blocks][-1] == 64
    assert batch.blocks[0].num_dst == batch.blocks[1].num_src
    for block, fanout in zip(batch.blocks[::-1], fanouts):  # hop 1 (last block) uses fanouts[0]
        src, dst = block.edge_index
        assert int(src.max()) < block.num_src and int(dst.max()) < block.num_dst
        per_target = {}
        for s, t in zip(batch.n_id[src].tolist(), batch.n_id[dst].tolist()):
            assert s in nbrs[t]  # a real neighbour
            per_target.setdefault(t, []).append(s)
        for t in batch.n_id[: block.num_dst].tolist():
            got = per_target.get(t, [])
            assert len(got) == len(set(got))  # without replacement
            assert len(got) == min(fanout, len(nbrs[t]))  # fan-out respected, all neighbours when fewer


def test_sampling_is_seeded_and_all_neighbours_with_minus_one(graph):
    data, csr = graph
    sampler = NeighborSampler(csr, (5, 5))
    seeds = torch.arange(0, 2000, 17)
    a = sampler.sample(seeds, torch.Generator().manual_seed(3))
    b = sampler.sample(seeds, torch.Generator().manual_seed(3))
    c = sampler.sample(seeds, torch.Generator().manual_seed(4))
    assert torch.equal(a.n_id, b.n_id) and all(torch.equal(x.edge_index, y.edge_index) for x, y in zip(a.blocks, b.blocks))
    assert not torch.equal(a.blocks[-1].edge_index, c.blocks[-1].edge_index)
    src, dst = sample_neighbors(csr, seeds, -1)
    assert src.numel() == int(csr.degree(seeds).sum())


def test_subsets_are_uniform():
    """A node with 6 neighbours, fan-out 3: each of the 20 subsets should come up with p = 1/20."""
    edge_index = to_undirected(torch.stack([torch.zeros(6, dtype=torch.long), torch.arange(1, 7)]))
    csr = CSRGraph.from_edge_index(edge_index, 7)
    trials = 20000
    src, dst = sample_neighbors(csr, torch.zeros(trials, dtype=torch.long), 3, torch.Generator().manual_seed(0))
    subsets = src.view(trials, 3).sort(1).values
    codes = (subsets - 1) @ torch.tensor([36, 6, 1])
    counts = torch.bincount(codes, minlength=216)
    counts = counts[counts > 0].double()
    assert counts.numel() == math.comb(6, 3)
    expected = trials / counts.numel()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 43.8  # chi-square, 19 degrees of freedom: p = 0.001
    per_neighbour = torch.bincount(src, minlength=7)[1:].double()
    assert float((per_neighbour / (trials * 0.5) - 1).abs().max()) < 0.03  # each kept with p = k/d = 1/2


def test_bad_input():
    csr = CSRGraph.from_edge_index(torch.tensor([[0, 1], [1, 0]]), 2)
    for bad in ([], [0], [3, -2], [2.5]):
        with pytest.raises(ValueError, match="fanouts must be positive"):
            check_fanouts(bad)
    with pytest.raises(ValueError, match="distinct"):
        NeighborSampler(csr, [1]).sample(torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="seeds must lie"):
        NeighborSampler(csr, [1]).sample(torch.tensor([2]))
