"""VQGraph benchmark: accuracy of teacher GNN / MLP / GLNN / VQGraph in the three settings, codebook
perplexity, and student-vs-teacher inductive inference latency on a 100k-node SBM graph.

    python benchmarks/vqgraph.py            # 5 seeds, digits + karate + 10k-node SBM, 100k-node SBM latency
    python benchmarks/vqgraph.py --quick    # 2 seeds, digits only, 20k-node SBM

Prints a paper-style table and writes benchmarks/results/vqgraph.json. Model selection uses validation
accuracy only; test accuracy is read once per run, at the selected epoch.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from distillcore.serialization import write_json_atomic
from graphdistill.datasets import SBMConfig, load_node_dataset, sbm_graph
from graphdistill.vqgraph import MLPStudent, SplitConfig, VQGNNTeacher, VQGraphConfig, run_experiment
from graphdistill.vqgraph.latency import inductive_latency
from graphdistill.vqgraph.pipeline import METHODS

RESULTS = Path(__file__).resolve().parent / "results" / "vqgraph.json"
# Karate has a class of 4 nodes: one train and one validation label per class, a tiny codebook.
# sbm is the default SBMConfig graph (10k nodes, 10 blocks, homophily 0.8, noisy 32-d features).
DATASET_CONFIGS = {
    "digits": VQGraphConfig(),
    "karate": VQGraphConfig(split=SplitConfig(train_per_class=1, val_per_class=1)),
    "sbm": VQGraphConfig(),
}
DATASET_CONFIGS["karate"].teacher.codebook_size = 16
LATENCY_NODES = 10
LATENCY_REPEATS = 5


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "runs": values}


def accuracy_table(datasets: list[str], seeds: int, progress: bool) -> dict:
    table = {}
    for name in datasets:
        data, config = load_node_dataset(name), DATASET_CONFIGS[name]
        scores = {s: {m: [] for m in METHODS} for s in ("transductive", "inductive", "production")}
        codebook = {"perplexity": [], "codes_used": []}
        for seed in range(seeds):
            # One inductive split run yields both the inductive and the production score.
            for run_setting in ("transductive", "inductive"):
                start = time.time()
                result = run_experiment(data, run_setting, config, seed, progress=progress)
                for method, acc in result.accuracy.items():
                    if run_setting == "transductive":
                        scores["transductive"][method].append(acc["test"])
                    else:
                        scores["inductive"][method].append(acc["test_inductive"])
                        scores["production"][method].append(acc["production"])
                if run_setting == "transductive":
                    codebook["perplexity"].append(result.codebook["perplexity"])
                    codebook["codes_used"].append(result.codebook["codes_used"])
                print(f"  {name} seed {seed} {run_setting}: "
                      + " ".join(f"{m}={result.accuracy[m]['test']:.3f}" for m in METHODS)
                      + f" ({time.time() - start:.0f}s)", flush=True)
        table[name] = {
            "accuracy": {s: {m: mean_std(v) for m, v in per.items()} for s, per in scores.items()},
            "codebook": {k: mean_std([float(x) for x in v]) for k, v in codebook.items()},
            "codebook_size": config.teacher.codebook_size,
        }
    return table


def latency(num_nodes: int, seed: int = 0) -> dict:
    """Per-node inductive inference on an SBM graph (see ``graphdistill.vqgraph.latency``).

    Latency does not depend on the weights, so both models keep their initial weights, with the
    benchmark's architecture (2-layer SAGE teacher with codebook, 2-layer MLP student).
    """
    config = VQGraphConfig()
    data = sbm_graph(SBMConfig(num_nodes=num_nodes), seed=seed)
    nodes = torch.randperm(num_nodes, generator=torch.Generator().manual_seed(seed))[:LATENCY_NODES]
    return inductive_latency(VQGNNTeacher(data.num_features, data.num_classes, config.teacher),
                             MLPStudent(data.num_features, data.num_classes, config.student), data, nodes,
                             repeats=LATENCY_REPEATS)


def print_table(table: dict, lat: dict) -> None:
    for name, entry in table.items():
        print(f"\n{name}: test accuracy (%), mean ± std over {len(entry['accuracy']['transductive']['teacher']['runs'])} seeds")
        print(f"{'setting':14s}" + "".join(f"{m:>16s}" for m in METHODS))
        for setting, per in entry["accuracy"].items():
            print(f"{setting:14s}" + "".join(f"{100 * per[m]['mean']:10.2f} ± {100 * per[m]['std']:4.2f}" for m in METHODS))
        cb = entry["codebook"]
        print(f"codebook: {cb['codes_used']['mean']:.0f} / {entry['codebook_size']} codes used, "
              f"perplexity {cb['perplexity']['mean']:.1f} ± {cb['perplexity']['std']:.1f}")
    print(f"\ninductive inference of {lat['nodes_timed']} random nodes, {lat['num_nodes']}-node SBM "
          f"({lat['hops']}-hop neighbourhoods of {lat['mean_neighbourhood_size']:.0f} nodes on average):")
    print(f"  teacher (k_hop_subgraph + GNN) {lat['teacher_ms']:.2f} ms   student MLP {lat['student_ms']:.3f} ms   "
          f"speed-up {lat['speedup']:.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 seeds, digits only, 20k-node SBM")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per setting (default 5, quick 2)")
    parser.add_argument("--datasets", default=None,
                        help="comma-separated offline data sets: digits, karate, sbm (default digits,karate,sbm)")
    parser.add_argument("--sbm-nodes", type=int, default=None, help="SBM size for latency (default 100000)")
    parser.add_argument("--progress", action="store_true", help="show tqdm bars of every training run")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for training and timing (1 avoids OpenMP stalls on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = args.seeds or (2 if args.quick else 5)
    datasets = (args.datasets or ("digits" if args.quick else "digits,karate,sbm")).split(",")
    sbm_nodes = args.sbm_nodes or (20_000 if args.quick else 100_000)

    lat = latency(sbm_nodes)
    table = accuracy_table(datasets, seeds, args.progress)
    print_table(table, lat)
    # Results of other data sets from an earlier run are kept, so data sets can be run separately.
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    merged_table = {**previous.get("datasets", {}), **{n: {**e, "seeds": seeds, "quick": args.quick} for n, e in table.items()}}
    merged_config = {**previous.get("config", {}), **{n: DATASET_CONFIGS[n].to_dict() for n in datasets}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RESULTS, {"datasets": merged_table, "latency": lat, "config": merged_config})
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
