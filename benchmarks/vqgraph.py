"""VQGraph benchmark: accuracy of teacher GNN / MLP / GLNN / VQGraph in the three settings, codebook
perplexity, and student-vs-teacher inductive inference latency on a 100k-node SBM graph.

    python benchmarks/vqgraph.py            # 5 seeds, digits + karate + 10k-node SBM, 100k-node SBM latency
    python benchmarks/vqgraph.py --datasets atoms --seeds 3 --no-latency   # the atom graph, where the label needs the graph
    python benchmarks/vqgraph.py --quick    # 2 seeds, digits only, 20k-node SBM

Prints a paper-style table and writes benchmarks/results/vqgraph.json. Model selection uses validation
accuracy only; test accuracy is read once per run, at the selected epoch.

On graphs whose node features carry only part of the label (``atoms``), a graph-free student can never
beat the same MLP trained on every label (the features-only ceiling, column ``ceiling``). The table then
reports the share of the gap between the few-label MLP and that ceiling that GLNN and VQGraph close:
``(acc_student - acc_mlp) / (acc_ceiling - acc_mlp)``, per seed.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from distillcore.serialization import write_json_atomic
from graphdistill.data.node import SPLIT_PER_CLASS
from graphdistill.datasets import SBMConfig, load_node_dataset, sbm_graph
from graphdistill.vqgraph import (DistillConfig, MLPStudent, SplitConfig, VQGNNTeacher, VQGraphConfig,
                                 run_experiment)
from graphdistill.vqgraph.latency import inductive_latency
from graphdistill.vqgraph.pipeline import METHODS
from graphdistill.vqgraph.splits import make_split, production_score
from graphdistill.vqgraph.trainer import train_student

RESULTS = Path(__file__).resolve().parent / "results" / "vqgraph.json"
# Karate has a class of 4 nodes: one train and one validation label per class, a tiny codebook.
# sbm is the default SBMConfig graph (10k nodes, 10 blocks, homophily 0.8, noisy 32-d features).
DATASET_CONFIGS = {
    "digits": VQGraphConfig(),
    "karate": VQGraphConfig(split=SplitConfig(**SPLIT_PER_CLASS["karate"])),
    "sbm": VQGraphConfig(),
    # GLNN's / VQGraph's lamb = 0: with the CE term on the per-class labels the students learn a uniform
    # class prior and stop at 65 % whatever the teacher (docs of DistillConfig)
    "atoms": VQGraphConfig(distill=DistillConfig(ce_weight=0.0)),
}
# data sets whose features do not determine the label: report the features-only ceiling and gap shares
CEILING_DATASETS = ("atoms",)
GAP_METHODS = ("glnn", "vqgraph")
CEILING_FOLDS = 2
DATASET_CONFIGS["karate"].teacher.codebook_size = 16
LATENCY_NODES = 10
LATENCY_REPEATS = 5


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "runs": values}


def feature_ceiling(data, setting: str, config: VQGraphConfig, seed: int, folds: int = CEILING_FOLDS) -> float:
    """What a graph-free model can reach from the features alone: the students' MLP trained with every label
    it may see, scored on the split's test nodes (transductive) or held-out nodes (inductive).

    Those nodes are the rest of the graph, so the labels come by cross-fitting: the scored nodes are cut into
    ``folds`` parts, and each part is predicted by an MLP trained on the labels of every other node except
    the validation nodes (kept for its model selection)."""
    split = make_split(data, setting, config.split, seed)
    scored = split.test if setting == "transductive" else split.test_inductive
    order = scored[torch.randperm(scored.numel(), generator=torch.Generator().manual_seed(seed))]
    correct = 0
    for part in order.chunk(folds):
        hidden = torch.zeros(data.num_nodes, dtype=torch.bool)
        hidden[split.val] = True
        hidden[part] = True
        student, _ = train_student(data.x, data.y, (~hidden).nonzero().view(-1), split.val, int(data.num_classes),
                                   "mlp", config.student, config.distill, config.student_train, None, seed=seed,
                                   progress=False)
        with torch.no_grad():
            correct += int((student(data.x[part]).argmax(-1) == data.y[part]).sum())
    return correct / scored.numel()


def gap_shares(per_setting: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per seed, the share of the few-label MLP's gap to the ceiling that each distilled student closes."""
    return {m: [(s - mlp) / (c - mlp) if c != mlp else float("nan")
                for s, mlp, c in zip(per_setting[m], per_setting["mlp"], per_setting["ceiling"])]
            for m in GAP_METHODS}


def accuracy_table(datasets: list[str], seeds: int, progress: bool) -> dict:
    table = {}
    for name in datasets:
        data, config = load_node_dataset(name), DATASET_CONFIGS[name]
        methods = METHODS + (("ceiling",) if name in CEILING_DATASETS else ())
        scores = {s: {m: [] for m in methods} for s in ("transductive", "inductive", "production")}
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
                if "ceiling" in methods:
                    ceiling = feature_ceiling(data, run_setting, config, seed)
                    if run_setting == "transductive":
                        scores["transductive"]["ceiling"].append(ceiling)
                    else:
                        scores["inductive"]["ceiling"].append(ceiling)
                        # the production mix needs the ceiling on observed test nodes: this seed's transductive one
                        scores["production"]["ceiling"].append(
                            production_score(scores["transductive"]["ceiling"][-1], ceiling))
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
        if "ceiling" in methods:
            table[name]["gap_closed"] = {s: {m: mean_std(v) for m, v in gap_shares(per).items()} for s, per in scores.items()}
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
        methods = list(entry["accuracy"]["transductive"])
        print(f"{'setting':14s}" + "".join(f"{m:>16s}" for m in methods))
        for setting, per in entry["accuracy"].items():
            print(f"{setting:14s}" + "".join(f"{100 * per[m]['mean']:10.2f} ± {100 * per[m]['std']:4.2f}" for m in methods))
        if "gap_closed" in entry:
            print("share of the few-label MLP's gap to the features-only ceiling closed (%):")
            for setting, per in entry["gap_closed"].items():
                print(f"  {setting:14s}" + "".join(f"  {m} {100 * v['mean']:6.1f} ± {100 * v['std']:4.1f}" for m, v in per.items()))
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
                        help="comma-separated offline data sets: digits, karate, sbm, atoms (default digits,karate,sbm)")
    parser.add_argument("--sbm-nodes", type=int, default=None, help="SBM size for latency (default 100000)")
    parser.add_argument("--no-latency", action="store_true",
                        help="keep the latency of the previous run (when re-running some data sets only)")
    parser.add_argument("--progress", action="store_true", help="show tqdm bars of every training run")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help=f"JSON to write (default {RESULTS.name}); earlier results are read from it, or from the "
                             "default file while it does not exist")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for training and timing (1 avoids OpenMP stalls on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = args.seeds or (2 if args.quick else 5)
    datasets = (args.datasets or ("digits" if args.quick else "digits,karate,sbm")).split(",")
    sbm_nodes = args.sbm_nodes or (20_000 if args.quick else 100_000)

    # Results of other data sets from an earlier run are kept, so data sets can be run separately.
    source = args.out if args.out.exists() else RESULTS
    previous = json.loads(source.read_text()) if source.exists() else {}
    if args.no_latency and "latency" not in previous:
        parser.error(f"--no-latency needs an earlier latency in {source}")
    lat = previous["latency"] if args.no_latency else latency(sbm_nodes)
    table = accuracy_table(datasets, seeds, args.progress)
    print_table(table, lat)
    merged_table = {**previous.get("datasets", {}), **{n: {**e, "seeds": seeds, "quick": args.quick} for n, e in table.items()}}
    merged_config = {**previous.get("config", {}), **{n: DATASET_CONFIGS[n].to_dict() for n in datasets}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, {"datasets": merged_table, "latency": lat, "config": merged_config})
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
