"""Sharded Mirage: ids, support counts and the distilled file do not depend on the number of shards.

The map and reduce steps run in this process (LocalExecutor over several ShardWorkers); one test runs
them on real local Ray workers.
"""
import os
import sys
import time

import numpy as np
import pytest
import torch

from graphdistill.data.graphs import GraphArrays, load_graph_dataset
from graphdistill.mirage import DistillConfig, MiningConfig, distill, hash_trees
from graphdistill.mirage.cluster import ClusterConfig, open_executor
from graphdistill.mirage.labels import discretize
from graphdistill.mirage.mining import group_sizes, mine_patterns, mine_shards
from graphdistill.mirage.shards import LocalExecutor, ShardWorker, count_supports, hash_shards, shard_arrays

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_union(num_graphs, seed, num_labels=3, num_tasks=1, missing=0.0):
    """Random small undirected graphs as one union, with labels y [G, T] (NaN where missing)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 9, num_graphs)
    node_ptr = np.concatenate([[0], np.cumsum(sizes)])
    edges, edge_ptr = [], [0]
    for g, n in enumerate(sizes):
        pairs = rng.integers(0, n, (int(n) + 2, 2))
        pairs = pairs[pairs[:, 0] != pairs[:, 1]] + node_ptr[g]
        edges.append(np.concatenate([pairs.T, pairs.T[::-1]], 1))
        edge_ptr.append(edge_ptr[-1] + edges[-1].shape[1])
    edge_index = np.concatenate(edges, 1).astype(np.int64)
    y = rng.integers(0, 2, (num_graphs, num_tasks)).astype(np.float64)
    y[rng.random(y.shape) < missing] = np.nan
    return {
        "node_labels": rng.integers(0, num_labels, node_ptr[-1]).astype(np.int64),
        "edge_index": edge_index,
        "edge_labels": rng.integers(0, 2, edge_index.shape[1]).astype(np.int64),
        "node_ptr": node_ptr.astype(np.int64),
        "edge_ptr": np.array(edge_ptr, dtype=np.int64),
        "y": y,
        "split": np.zeros(num_graphs, dtype=np.int8),
    }


def sharded(union, num_shards):
    shards = shard_arrays(*(union[k] for k in ("node_labels", "edge_index", "edge_labels", "node_ptr", "edge_ptr", "y", "split")),
                          num_shards)
    return LocalExecutor([ShardWorker(**s) for s in shards])


@pytest.mark.parametrize("num_shards", [2, 3, 8])
def test_level_ids_and_tables_equal_the_unsharded_hashing(num_shards):
    union = random_union(40, seed=num_shards)
    reference = hash_trees(torch.from_numpy(union["node_labels"]), torch.from_numpy(union["edge_index"]),
                           torch.from_numpy(union["edge_labels"]), depth=3, num_node_labels=3)
    executor = sharded(union, num_shards)
    assert executor.num_shards == num_shards
    levels = hash_shards(executor, 3, 3)
    for level in range(4):
        ids = np.concatenate([w.level_ids()[level] for w in executor.workers])
        assert np.array_equal(ids, reference.ids[level].numpy())
    for ours, ref in zip(levels, reference.levels):
        for a, b in zip(vars(ours).values(), vars(ref).values()):
            assert torch.equal(a, b)


def test_support_counts_and_multitask_patterns_match_per_task_reference():
    # Three binary tasks, a third of the labels missing: group (task, class) counts against a brute-force
    # count, and each task's patterns against the single-task miner run on that task's labelled graphs.
    union = random_union(60, seed=5, num_labels=2, num_tasks=3, missing=0.3)
    executor = sharded(union, 4)
    levels = hash_shards(executor, 1, 2)
    num_trees = levels[-1].num_trees
    ptr, items, counts = count_supports(executor, 1, num_trees, False, 6, 2)
    trees = np.concatenate([w.level_ids()[1] for w in executor.workers])
    per_graph = [set(trees[union["node_ptr"][g] : union["node_ptr"][g + 1]].tolist()) for g in range(60)]
    for group in range(6):
        t, c = divmod(group, 2)
        members = [g for g in range(60) if union["y"][g, t] == c]
        expected = {i: sum(i in per_graph[g] for g in members) for i in range(num_trees)}
        got = dict(zip(items[ptr[group] : ptr[group + 1]].tolist(), counts[ptr[group] : ptr[group + 1]].tolist()))
        assert got == {i: n for i, n in expected.items() if n}
    config = MiningConfig(min_support=0.3, max_pattern_size=None)
    mined = mine_shards(executor, 1, num_trees, group_sizes(union["y"], union["split"], 2), config)
    assert mined.num_tasks == 3 and len(mined.patterns) == 6
    graph_trees = [trees[union["node_ptr"][g] : union["node_ptr"][g + 1]] for g in range(60)]
    for t in range(3):
        known = ~np.isnan(union["y"][:, t])
        single = mine_patterns([graph_trees[g] for g in np.flatnonzero(known)], union["y"][known, t].astype(int), 2, config)
        assert mined.patterns[2 * t : 2 * t + 2] == single.patterns
        assert mined.thresholds[2 * t : 2 * t + 2] == single.thresholds


def file_contents(distilled):
    meta = {k: v for k, v in distilled.meta.items() if k != "cpu_seconds"}
    return distilled.tensors(), meta


def assert_same_file(a, b):
    (ta, ma), (tb, mb) = a, b
    assert ma == mb
    assert ta.keys() == tb.keys()
    for key in ta:
        assert ta[key].dtype == tb[key].dtype and torch.equal(ta[key], tb[key]), key


@pytest.mark.parametrize("name,support", [("solubility", 0.1), ("nci-tpsa", 0.05)])
def test_distilled_file_identical_for_1_2_8_shards(name, support):
    splits = load_graph_dataset(name)
    config = DistillConfig(sweep=None, mining=MiningConfig(min_support=support))
    files = {k: distill(splits, config, cluster=ClusterConfig(shards=k)) for k in (1, 2, 8)}
    for k in (2, 8):
        assert_same_file(file_contents(files[1]), file_contents(files[k]))
    one = files[1]
    assert one.num_patterns > 10
    # A support exactly at a pattern's frequency keeps that pattern (threshold ceil(s * n) = its count),
    # with every shard count; its count is checked against a direct count over the training graphs.
    c = int(one.pattern_class[0])
    frequency = int(one.pattern_frequency[0])
    size = one.meta["class_sizes"][c]
    supports = [0.9] * splits.num_classes
    supports[c] = frequency / size
    at = DistillConfig(sweep=None, mining=MiningConfig(min_support=supports))
    boundary = {k: distill(splits, at, cluster=ClusterConfig(shards=k)) for k in (1, 8)}
    assert_same_file(file_contents(boundary[1]), file_contents(boundary[8]))
    b = boundary[1]
    assert b.meta["support_counts"][c] == frequency
    in_class = (b.pattern_class == c).numpy()
    assert int(b.pattern_frequency[in_class].min()) == frequency  # supports equal to the threshold are kept
    # Reference: every pattern's support counted directly over the training graphs of class c, trees
    # compared by content (decoded to feature rows), not by id.
    arrays = GraphArrays.from_splits(splits)
    hashed = arrays.select(arrays.split != 2)
    train = torch.from_numpy(np.repeat(hashed.split == 0, np.diff(hashed.node_ptr)))
    nodes = discretize(torch.from_numpy(hashed.x), train, at.discretize)
    edges = discretize(torch.from_numpy(hashed.edge_attr), train[torch.from_numpy(hashed.edge_index[1])], at.discretize)
    tables = hash_trees(nodes.labels, torch.from_numpy(hashed.edge_index), edges.labels, at.depth)
    decode_global = canonical_decoder(tables.levels, nodes.table, edges.table)
    decode_file = canonical_decoder(b.levels, b.node_features, b.edge_features)
    top = tables.ids[at.depth].numpy()
    graph_sets = [{decode_global(at.depth, t) for t in set(top[hashed.node_ptr[g] : hashed.node_ptr[g + 1]].tolist())}
                  for g in np.flatnonzero((hashed.split == 0) & (hashed.y[:, 0] == c))]
    assert len(graph_sets) == size
    for p in np.flatnonzero(in_class):
        pattern = {decode_file(at.depth, int(t)) for t in b.pattern_trees[b.pattern_ptr[p] : b.pattern_ptr[p + 1]]}
        assert sum(pattern <= trees for trees in graph_sets) == int(b.pattern_frequency[p])


def canonical_decoder(levels, node_features, edge_features):
    """Tree id -> nested tuple (root feature row, sorted (edge feature row, child)), memoised."""
    memo = {}

    def decode(level, tree):
        if (level, tree) in memo:
            return memo[(level, tree)]
        if level == 0:
            out = tuple(node_features[tree].tolist())
        else:
            t = levels[level - 1]
            children = sorted((tuple(edge_features[int(t.child_edge_label[k])].tolist()), decode(level - 1, int(t.child[k])))
                              for k in range(int(t.ptr[tree]), int(t.ptr[tree + 1])))
            out = (tuple(node_features[int(t.label[tree])].tolist()), tuple(children))
        memo[(level, tree)] = out
        return out

    return decode


def test_bad_cluster_settings_fail_fast(tmp_path, monkeypatch, capsys):
    from graphdistill.cli import console_main

    with pytest.raises(ValueError, match="HOST:PORT"):
        ClusterConfig(address="nohost").validate()
    with pytest.raises(ValueError, match="workers must be an integer >= 0"):
        ClusterConfig(workers=-1).validate()
    many = (os.cpu_count() or 1) + 1  # more local workers than cores: refused, not thrashed
    with pytest.raises(ValueError, match=f"workers={many} on a machine with .* CPUs: .*--address"):
        ClusterConfig(workers=many).validate()
    ClusterConfig(workers=many, address="10.0.0.5:6379").validate()  # a cluster's CPUs are not this machine's
    # Nothing listens on port 1: one line, exit code 2, well within the timeout.
    out = tmp_path / "d.pt"
    monkeypatch.setattr(sys, "argv", ["graphdistill", "mirage", "distill", "solubility", "--out", str(out),
                                      "--address", "127.0.0.1:1", "--connect-timeout", "3"])
    start = time.monotonic()
    assert console_main() == 2
    assert time.monotonic() - start < 60  # includes reading the data set; the probe itself is immediate
    err = capsys.readouterr().err
    assert "Ray cluster at 127.0.0.1:1 does not answer" in err and err.count("\n") == 1
    assert not out.exists()


def test_workers_without_ray_name_the_extra(monkeypatch):
    from distillcore.extras import MissingExtraError

    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(MissingExtraError, match=r"\[dist\] extra"):
        with open_executor(lambda n: [], ClusterConfig(workers=2)):
            pass


@pytest.mark.timeout(300)  # a Ray scheduling deadlock must fail, not hang CI
def test_local_ray_two_workers_give_the_in_process_file():
    pytest.importorskip("ray", reason="needs the [dist] extra (ray) to run Mirage on Ray workers")
    union = random_union(40, seed=2, num_labels=2)
    graphs = []
    for g in range(40):
        n0, n1, e0, e1 = (int(v) for v in (union["node_ptr"][g], union["node_ptr"][g + 1], union["edge_ptr"][g], union["edge_ptr"][g + 1]))
        graphs.append({"x": torch.from_numpy(union["node_labels"][n0:n1, None]), "y": torch.tensor([g % 2]),
                       "edge_index": torch.from_numpy(union["edge_index"][:, e0:e1] - n0)})
    config = DistillConfig(depth=1, sweep=None, mining=MiningConfig(min_support=0.2))
    local = distill(graphs, config, cluster=ClusterConfig(shards=2))
    try:
        on_ray = distill(graphs, config, cluster=ClusterConfig(workers=2))
    except RuntimeError as err:  # ray.init itself failed (before any of our code ran on Ray): environment
        if "Ray did not start" not in str(err):
            raise
        pytest.skip(f"local Ray could not start here: {err}")
    assert local.num_patterns > 0
    assert_same_file(file_contents(local), file_contents(on_ray))
    assert on_ray.meta["cpu_seconds"] > 0


def test_multitask_distill_end_to_end(tmp_path):
    """A molpcba-style set (3 binary tasks, missing labels) as an arrays folder through the CLI: every
    (task, class) gets patterns, thresholds from its own labelled training graphs, and every task the
    same sampling mass."""
    from graphdistill.cli import main
    from graphdistill.mirage.distilled import DistilledDataset

    rng = np.random.default_rng(0)
    base = GraphArrays.from_splits(load_graph_dataset("solubility"))
    y = np.stack([base.y[:, 0] == 0, base.y[:, 0] == 2, rng.random(base.num_graphs) < 0.5], 1).astype(np.float64)
    y[rng.random(y.shape) < 0.2] = np.nan
    multi = GraphArrays(base.name, base.x, base.edge_index, base.edge_attr, base.node_ptr, base.edge_ptr, y, base.split,
                        2, ["low", "high", "coin"], ["no", "yes"])
    multi.save(tmp_path / "multi")
    out = tmp_path / "multi.mirage.pt"
    assert main(["mirage", "distill", "--dataset-file", str(tmp_path / "multi"), "--support", "0.3", "--depth", "1", "--out", str(out)]) == 0
    distilled = DistilledDataset.load(out)
    assert distilled.num_tasks == 3 and distilled.meta["task_names"] == ["low", "high", "coin"]
    groups = set(zip(distilled.pattern_task.tolist(), distilled.pattern_class.tolist()))
    assert groups == {(t, c) for t in range(3) for c in range(2)}
    train = multi.split == 0
    for t in range(3):
        known = train & ~np.isnan(y[:, t])
        for c in range(2):
            size = int((y[known, t] == c).sum())
            assert distilled.meta["class_sizes"][2 * t + c] == size
            assert distilled.meta["support_counts"][2 * t + c] == int(np.ceil(0.3 * size - 1e-9))
    weights = distilled.sampling_weights()
    per_task = torch.zeros(3, dtype=torch.float64).index_add_(0, distilled.pattern_task.long(), weights)
    assert torch.allclose(per_task, torch.full((3,), 1 / 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="3-task distilled set"):
        main(["mirage", "train", str(out)])
