"""Mirage at scale: hashing CPU-seconds per node with 1 and 2 Ray workers, and total distillation time
on the offline molecule sets replicated to a million graphs or more.

    python benchmarks/graph_scale_mirage.py                     # hashing on 100k molecules, totals at 100k, 300k, 1M
    python benchmarks/graph_scale_mirage.py --totals 100000     # a quick run
    python benchmarks/graph_scale_mirage.py --no-ray            # shards in this process only

Hashing cost is measured as the *process CPU time of the workers* (``time.process_time`` inside each
Ray actor, summed over actors), not wall time: the machine these figures come from has 2 cores shared
with other jobs, so wall time measures the neighbours. "Flat" means CPU-seconds per node with 2
workers within 20% of 1 worker (the sharded map does no more work per node; the reduce runs on the
driver and is reported apart). Totals run ``distill`` (discretisation, hashing, support counting,
FP-growth; fixed support, no sweep) and report wall and CPU seconds (driver + workers).

Prints a table and writes benchmarks/results/graph_scale_mirage.json, and the same under the ``mirage``
key of benchmarks/results/graph_scale.json (beside benchmarks/graph_scale.py's VQGraph figures). A run with
an empty ``--totals`` keeps the totals of the previous run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from distillcore.serialization import write_json_atomic
from graphdistill.data.graphs import ReplicateConfig, offline_molecules, replicate_molecules
from graphdistill.mirage import DiscretizeConfig, DistillConfig, MiningConfig, discretize, distill
from graphdistill.mirage.cluster import ClusterConfig, open_executor
from graphdistill.mirage.shards import SPLIT_TEST, SPLIT_TRAIN, hash_shards, shard_arrays

RESULTS = Path(__file__).resolve().parent / "results" / "graph_scale_mirage.json"
GRAPH_SCALE = RESULTS.with_name("graph_scale.json")
DEPTH = 2
SUPPORT = 0.1


def hash_inputs(arrays) -> dict:
    """Node / edge labels of the train + val graphs (what distill hashes), computed once."""
    hashed = arrays.select(arrays.split != SPLIT_TEST)
    train = torch.from_numpy(np.repeat(hashed.split == SPLIT_TRAIN, np.diff(hashed.node_ptr)))
    nodes = discretize(torch.from_numpy(hashed.x), train, DiscretizeConfig())
    edges = discretize(torch.from_numpy(hashed.edge_attr), train[torch.from_numpy(hashed.edge_index[1])], DiscretizeConfig())
    return {"hashed": hashed, "node_labels": nodes.labels.numpy(), "edge_labels": edges.labels.numpy(),
            "num_node_labels": nodes.table.shape[0]}


def measure_hashing(inputs: dict, cluster: ClusterConfig) -> dict:
    """Depth-2 hashing over the cluster's shards: summed worker CPU, driver CPU (reduce), wall."""
    h = inputs["hashed"]

    def make_shards(n):
        return shard_arrays(inputs["node_labels"], h.edge_index, inputs["edge_labels"], h.node_ptr, h.edge_ptr, h.y,
                            h.split, n)

    with open_executor(make_shards, cluster) as executor:
        before = executor.map("get_cpu_seconds")
        driver, wall = time.process_time(), time.perf_counter()
        levels = hash_shards(executor, DEPTH, inputs["num_node_labels"])
        wall, driver = time.perf_counter() - wall, time.process_time() - driver
        worker = sum(executor.map("get_cpu_seconds")) - sum(before)
        shards = executor.num_shards
    nodes = int(h.node_ptr[-1])
    # in-process shards run their map steps in the driver: its CPU time is map + reduce
    reduce = driver - worker if not executor.remote else driver
    return {"shards": shards, "nodes": nodes, "worker_cpu_s": worker, "driver_cpu_s": driver, "reduce_cpu_s": reduce,
            "wall_s": wall,
            "worker_cpu_us_per_node": 1e6 * worker / nodes, "distinct_trees": levels[-1].num_trees}


def measure_total(base, num_graphs: int, cluster: ClusterConfig) -> dict:
    start = time.perf_counter()
    arrays = replicate_molecules(ReplicateConfig(num_graphs=num_graphs), base=base)
    generate = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    distilled = distill(arrays, DistillConfig(depth=DEPTH, sweep=None, mining=MiningConfig(min_support=SUPPORT)), cluster=cluster)
    return {"graphs": num_graphs, "nodes": int(arrays.node_ptr[-1]), "edges": int(arrays.edge_index.shape[1]),
            "generate_s": generate, "distill_wall_s": time.perf_counter() - start,
            "driver_cpu_s": time.process_time() - cpu, "cpu_s_driver_plus_workers": distilled.meta["cpu_seconds"],
            "patterns": distilled.num_patterns, "distinct_trees": distilled.meta["num_distinct_trees"],
            "workers": cluster.workers, "shards": cluster.shards}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hash-graphs", type=int, default=100_000, help="molecules for the per-node hashing cost")
    parser.add_argument("--totals", type=int, nargs="*", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--no-ray", action="store_true", help="in-process shards only (no [dist] extra needed)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the driver's reduce: one thread, like every worker
    base = offline_molecules()
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs (CPU time is what compares)",
              "depth": DEPTH, "support": SUPPORT, "hashing": [], "totals": []}
    inputs = hash_inputs(replicate_molecules(ReplicateConfig(num_graphs=args.hash_graphs), base=base))
    settings = [("in-process", ClusterConfig(shards=1)), ("in-process", ClusterConfig(shards=2))]
    if not args.no_ray:
        settings += [("ray", ClusterConfig(workers=1)), ("ray", ClusterConfig(workers=2))]
    for kind, cluster in settings:
        try:
            row = {"kind": kind, "workers": cluster.workers, **measure_hashing(inputs, cluster)}
        except RuntimeError as err:  # Ray could not start (overloaded machine): recorded, not hidden
            row = {"kind": kind, "workers": cluster.workers, "error": str(err)}
        result["hashing"].append(row)
        print(row)
    ray_rows = {r["workers"]: r for r in result["hashing"] if r["kind"] == "ray" and "error" not in r}
    if {1, 2} <= ray_rows.keys():
        ratio = ray_rows[2]["worker_cpu_us_per_node"] / ray_rows[1]["worker_cpu_us_per_node"]
        result["ray_cpu_per_node_ratio_2_vs_1"] = ratio
        result["flat_within_20_percent"] = bool(abs(ratio - 1) <= 0.2)
    total_cluster = ClusterConfig(workers=2) if 2 in ray_rows else ClusterConfig(shards=1)
    for n in args.totals:
        row = measure_total(base, n, total_cluster)
        result["totals"].append(row)
        print(row)
        write_json_atomic(RESULTS, result)  # a long run keeps what it measured
    if not args.totals and RESULTS.exists():  # a hashing-only run keeps the earlier totals
        result["totals"] = json.loads(RESULTS.read_text()).get("totals", [])
    write_json_atomic(RESULTS, result)
    graph_scale = json.loads(GRAPH_SCALE.read_text()) if GRAPH_SCALE.exists() else {}
    write_json_atomic(GRAPH_SCALE, {**graph_scale, "mirage": result})

    print(f"\nMirage hashing, depth {DEPTH}, {inputs['hashed'].node_ptr[-1]:,} nodes ({args.hash_graphs:,} molecules)")
    print(f"{'setting':<22}{'shards':>7}{'worker CPU s':>14}{'us/node':>9}{'driver CPU s':>14}{'wall s':>9}")
    for r in result["hashing"]:
        name = f"{r['kind']} w={r['workers']}"
        if "error" in r:
            print(f"{name:<22}  failed: {r['error'][:80]}")
            continue
        print(f"{name:<22}{r['shards']:>7}{r['worker_cpu_s']:>14.2f}{r['worker_cpu_us_per_node']:>9.2f}"
              f"{r['driver_cpu_s']:>14.2f}{r['wall_s']:>9.1f}")
    if "ray_cpu_per_node_ratio_2_vs_1" in result:
        print(f"CPU per node, 2 vs 1 Ray workers: {result['ray_cpu_per_node_ratio_2_vs_1']:.3f} "
              f"(flat within 20%: {result['flat_within_20_percent']})")
    print(f"\n{'graphs':>10}{'nodes':>12}{'wall s':>9}{'CPU s':>9}{'patterns':>9}{'trees':>9}")
    for r in result["totals"]:
        print(f"{r['graphs']:>10,}{r['nodes']:>12,}{r['distill_wall_s']:>9.1f}{r['cpu_s_driver_plus_workers']:>9.1f}"
              f"{r['patterns']:>9}{r['distinct_trees']:>9}")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
