"""Computation-tree ids: exact (brute-force rooted-tree isomorphism), equal to a naive unrolled reference."""
import itertools

import networkx as nx
import pytest
import torch

from graphdistill.mirage.trees import LevelTable, hash_trees, intern_rows, tree_sizes, unroll_trees


def random_graph(num_nodes, num_edges, num_labels, num_edge_labels, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(num_labels, (num_nodes,), generator=g)
    pairs = torch.randint(num_nodes, (num_edges, 2), generator=g)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    edge_labels = torch.randint(num_edge_labels, (pairs.shape[0],), generator=g)
    # Undirected: both directions with the same label (PyG convention).
    edge_index = torch.cat([pairs.T, pairs.T.flip(0)], dim=1)
    return labels, edge_index, torch.cat([edge_labels, edge_labels])


def naive_tree(labels, edge_index, edge_labels, v, depth):
    """The unrolled tree as a nested tuple, children sorted: the textbook canonical form."""
    if depth == 0:
        return (int(labels[v]),)
    children = [
        (int(edge_labels[k]), naive_tree(labels, edge_index, edge_labels, int(edge_index[0, k]), depth - 1))
        for k in range(edge_index.shape[1])
        if int(edge_index[1, k]) == v
    ]
    return (int(labels[v]), tuple(sorted(children)))


def explicit_tree(labels, edge_index, edge_labels, v, depth):
    """The unrolled tree as a networkx DiGraph (child -> parent), every copy of a node a new vertex."""
    tree = nx.DiGraph()
    tree.add_node(0, label=int(labels[v]))
    frontier = [(0, v)]
    for _ in range(depth):
        nxt = []
        for node, orig in frontier:
            for k in range(edge_index.shape[1]):
                if int(edge_index[1, k]) == orig:
                    u = int(edge_index[0, k])
                    child = tree.number_of_nodes()
                    tree.add_node(child, label=int(labels[u]))
                    tree.add_edge(child, node, label=int(edge_labels[k]))
                    nxt.append((child, u))
        frontier = nxt
    return tree


def decode(levels, level, tree_id):
    if level == 0:
        return (tree_id,)
    t = levels[level - 1]
    children = [
        (int(t.child_edge_label[k]), decode(levels, level - 1, int(t.child[k]))) for k in range(int(t.ptr[tree_id]), int(t.ptr[tree_id + 1]))
    ]
    return (int(t.label[tree_id]), tuple(sorted(children)))  # id order differs from tuple order


def unrolled_nested(u, node, level):
    children = [
        (int(u.edge_labels[k]), unrolled_nested(u, int(u.edge_index[0, k]), level - 1))
        for k in range(u.edge_index.shape[1])
        if int(u.edge_index[1, k]) == node
    ]
    return (int(u.node_labels[node]),) if level == 0 else (int(u.node_labels[node]), tuple(sorted(children)))


def test_ids_match_brute_force_isomorphism():
    # Graph a, a node- and edge-permuted copy of a (equal trees stored in another order) and a
    # random graph b, as one union; few labels so that trees also coincide by chance.
    a = random_graph(6, 7, 2, 2, seed=1)
    b = random_graph(6, 7, 2, 2, seed=2)
    perm = torch.tensor([3, 5, 0, 1, 4, 2])  # node i of a is node perm[i] of the copy
    edge_perm = torch.randperm(a[1].shape[1], generator=torch.Generator().manual_seed(0))
    copy_labels = torch.empty(6, dtype=torch.long)
    copy_labels[perm] = a[0]
    labels = torch.cat([a[0], copy_labels, b[0]])
    edge_index = torch.cat([a[1], perm[a[1]][:, edge_perm] + 6, b[1] + 12], dim=1)
    edge_labels = torch.cat([a[2], a[2][edge_perm], b[2]])
    tables = hash_trees(labels, edge_index, edge_labels, depth=3)
    for i in range(6):
        assert all(tables.ids[d][i] == tables.ids[d][6 + perm[i]] for d in range(4))
    node_match = lambda p, q: p["label"] == q["label"]  # noqa: E731
    for depth in (1, 2, 3):
        trees = [explicit_tree(labels, edge_index, edge_labels, v, depth) for v in range(18)]
        for v, w in itertools.combinations(range(18), 2):
            iso = trees[v].number_of_nodes() == trees[w].number_of_nodes() and nx.is_isomorphic(
                trees[v], trees[w], node_match=node_match, edge_match=node_match
            )
            assert iso == bool(tables.ids[depth][v] == tables.ids[depth][w]), (depth, v, w)


@pytest.mark.parametrize("seed", [0, 3, 7])
def test_level_by_level_equals_naive_unrolled_reference(seed):
    labels, edge_index, edge_labels = random_graph(9, 14, 3, 2, seed)
    depth = 3
    tables = hash_trees(labels, edge_index, edge_labels, depth)
    for level in range(depth + 1):
        naive = [naive_tree(labels, edge_index, edge_labels, v, level) for v in range(9)]
        ids = tables.ids[level].tolist()
        for v, w in itertools.combinations(range(9), 2):
            assert (naive[v] == naive[w]) == (ids[v] == ids[w])
        for v in range(9):
            assert decode(tables.levels, level, ids[v]) == naive[v]
        # Rebuilding the trees from the tables gives the naive trees back.
        unrolled = unroll_trees(tables.levels, level, torch.tensor(ids))
        for v in range(9):
            assert unrolled_nested(unrolled, v, level) == naive[v]


def test_unrolled_tree_size_and_edge_back_to_parent():
    # Path 0 - 1 - 2: node 1's depth-2 tree has 1 + 2 + (1 + 1) + ... nodes, parents repeated.
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    tables = hash_trees(torch.tensor([0, 1, 0]), edge_index, None, depth=2)
    unrolled = unroll_trees(tables.levels, 2, tables.ids[2][1:2])
    # root 1; children 0, 2; their children: 1 (back to the parent) each -> 5 nodes, 4 edges.
    assert unrolled.node_labels.tolist() == [1, 0, 0, 1, 1]
    assert unrolled.edge_index.shape == (2, 4)
    assert bool((unrolled.tree == 0).all())
    # Ends 0 and 2 have isomorphic trees, the middle not.
    assert tables.ids[2][0] == tables.ids[2][2] != tables.ids[2][1]


def test_intern_rows_is_exact_for_prefixes_and_permuted_lengths():
    # Rows: (1), (1,0), (1,0,0), (1,0), (2,0), (0,1): prefixes and equal sums must stay apart.
    first = torch.tensor([1, 1, 1, 1, 2, 0])
    ptr = torch.tensor([0, 0, 1, 3, 4, 5, 6])
    cols = torch.tensor([0, 0, 0, 0, 0, 1])
    ids = intern_rows(first, ptr, cols).tolist()
    assert ids[1] == ids[3]
    assert len({ids[0], ids[1], ids[2], ids[4], ids[5]}) == 5


def test_bad_input_errors():
    labels, edge_index, edge_labels = random_graph(5, 5, 2, 2, 0)
    with pytest.raises(ValueError, match="depth must be an integer >= 1"):
        hash_trees(labels, edge_index, edge_labels, 0)
    with pytest.raises(ValueError, match="edge_index must index nodes"):
        hash_trees(labels, edge_index + 10, edge_labels, 2)
    with pytest.raises(ValueError, match="node_labels is empty"):
        hash_trees(torch.zeros(0, dtype=torch.long), torch.zeros(2, 0, dtype=torch.long), None, 2)
    with pytest.raises(ValueError, match="number of edges"):
        hash_trees(labels, edge_index, edge_labels[:-1], 2)


@pytest.mark.parametrize("seed", [0, 5])
def test_tree_sizes_equal_the_unrolled_node_counts(seed):
    labels, edge_index, edge_labels = random_graph(12, 20, 3, 2, seed)
    tables = hash_trees(labels, edge_index, edge_labels, depth=3)
    for level in range(1, 4):
        ids = torch.arange(tables.levels[level - 1].num_trees)
        unrolled = unroll_trees(tables.levels, level, ids)
        assert torch.equal(tree_sizes(tables.levels, level), torch.bincount(unrolled.tree, minlength=ids.numel()))


def test_unrolling_refuses_trees_too_large_before_building_them():
    """Tables from a file can describe a tree of fan-out 2000 at every level: 1 + 2000 + 2000^2 + 2000^3 nodes."""
    fan_out, depth = 2000, 3
    table = LevelTable(torch.zeros(1, dtype=torch.long), torch.tensor([0, fan_out]),
                       torch.zeros(fan_out, dtype=torch.long), torch.zeros(fan_out, dtype=torch.long))
    levels = [table] * depth
    exact = sum(fan_out ** k for k in range(depth + 1))
    assert int(tree_sizes(levels, depth, limit=10 ** 12)[0]) == exact
    assert int(tree_sizes(levels, depth)[0]) == 50_000_001  # saturated at the default limit + 1
    with pytest.raises(ValueError, match="more than 1000 nodes"):
        unroll_trees(levels, depth, torch.zeros(3, dtype=torch.long), max_nodes=1000)
    assert unroll_trees(levels, 1, torch.zeros(1, dtype=torch.long)).node_labels.numel() == fan_out + 1
