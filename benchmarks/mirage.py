"""Mirage benchmark: distillation CPU time, distilled size / compression, and GCN / GIN / GAT test
accuracy and ROC-AUC when trained on (a) the full training set, (b) the Mirage set, (c) a random
subset of the training graphs of the same byte size, (d) a k-centre coreset of the same byte size
(:mod:`graphdistill.mirage.coreset`), (e) the Mirage set again, evaluated with the readout over the
nodes whose tree the set holds (:mod:`graphdistill.mirage.covered`, the reference code's protocol),
(f) a random subset of the same bytes counted as the distilled file counts its own (integers in their
smallest dtype: about 8x more molecules than (c), whose bytes are PyG's int64 tensors);
plus, at each ``--budgets`` ratio counted in compact bytes on both sides (``DistillConfig.compact_bytes``),
a Mirage set distilled within it against a random subset of the same compact bytes; and tree-hashing
throughput at depth 3 on a molecule set grown to about one million nodes.

    python benchmarks/mirage.py            # 5 seeds, 20 epochs, solubility + nci-tpsa (all 4992 molecules)
    python benchmarks/mirage.py --seeds 3  # fewer seeds (a loaded machine)
    python benchmarks/mirage.py --quick    # 2 seeds, fewer epochs, nci-tpsa cut to 1500 molecules
    python benchmarks/mirage.py --datasets nci-tpsa   # one data set (two processes may run one each)
    python benchmarks/mirage.py --budgets 50 25        # sets >= 50x and >= 25x smaller in compact bytes

Prints a paper-style table and writes benchmarks/results/mirage.json. Every finished training run
is checkpointed into the JSON (atomically), so an interrupted run resumes where it stopped
(``--fresh`` starts over; runs on a distilled set of other bytes / patterns are redone, full-data runs
are kept). Model selection uses validation ROC-AUC only; the test metrics are read
at the selected epoch. Runs with one torch thread (the machine is shared; CPU time is what is timed).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Batch

from distillcore.serialization import write_json_atomic
from graphdistill.data.graphs import SplitConfig, load_nci_tpsa, load_solubility
from graphdistill.mirage import DistillConfig, ModelConfig, TrainConfig, distill, graphs_nbytes, hash_trees, train_gnn
from graphdistill.mirage.coreset import k_center_subset_of_bytes
from graphdistill.mirage.covered import covered_roots, with_covered_readout
from graphdistill.mirage.labels import DiscretizeConfig, discretize
from graphdistill.mirage.models import MODELS, FeatureSpec

RESULTS = Path(__file__).resolve().parent / "results" / "mirage.json"
REGIMES = ("full", "mirage", "random", "kcenter", "covered", "random_compact")
BUDGET_REGIMES = ("mirage", "random_compact")
HASH_NODES = 1_000_000
HASH_DEPTH = 3


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def random_subset_of_bytes(graphs: list, nbytes: int, seed: int, compact: bool = False) -> list:
    """Random training graphs (seeded) whose payload (``compact``: integers in their smallest dtype, as the
    distilled file stores them) is as close as possible to ``nbytes``."""
    order = np.random.default_rng(seed).permutation(len(graphs))
    sizes = np.cumsum([graphs_nbytes([graphs[i]], compact) for i in order])
    count = max(int(np.argmin(np.abs(sizes - nbytes))) + 1, 2)
    return [graphs[i] for i in order[:count]]


def hashing_throughput(graphs: list) -> dict:
    """Depth-3 hashing speed (one thread) on the molecules replicated to about a million nodes."""
    batch = Batch.from_data_list(graphs)
    node_labels = discretize(batch.x, None, DiscretizeConfig()).labels
    edge_labels = discretize(batch.edge_attr, None, DiscretizeConfig()).labels
    copies = HASH_NODES // batch.num_nodes + 1
    edge_index = torch.cat([batch.edge_index + c * batch.num_nodes for c in range(copies)], dim=1)
    node_labels, edge_labels = node_labels.repeat(copies), edge_labels.repeat(copies)
    hash_trees(node_labels[:10_000], edge_index[:, :0], None, 1)  # warm-up of torch's kernels
    start = time.process_time()
    tables = hash_trees(node_labels, edge_index, edge_labels, HASH_DEPTH)
    seconds = time.process_time() - start
    return {
        "nodes": int(node_labels.numel()),
        "edges": int(edge_index.shape[1]),
        "depth": HASH_DEPTH,
        "cpu_seconds": seconds,
        "nodes_per_second": node_labels.numel() / seconds,
        "distinct_trees": int(tables.levels[-1].num_trees),
    }


def save_state(state: dict, names: list[str]) -> None:
    """Writes ``state``, taking the entries of the data sets not in ``names`` from the file: another process
    (``--datasets``) may be running them."""
    on_disk = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if on_disk.get("setup") == state["setup"]:
        state["datasets"].update({k: v for k, v in on_disk.get("datasets", {}).items() if k not in names})
        if "solubility" not in names and "hashing" in on_disk:  # measured with solubility
            state["hashing"] = on_disk["hashing"]
    write_json_atomic(RESULTS, state)


def train_regimes(entry: dict, name: str, splits, spec: FeatureSpec, regimes: tuple[str, ...], seeds: int, pick,
                  distilled, train_config: TrainConfig, state: dict, held_out: dict | None = None, label: str = "") -> None:
    """Trains each model on ``pick(regime, seed)`` -> (graphs, weights) for every regime and seed not yet in
    ``entry["runs"]``, saving the JSON after each run. Weighted graphs are the Mirage set, counted as its file;
    the others in compact bytes for ``random_compact``, as PyG holds them otherwise. ``held_out`` maps a regime
    to its own (validation, test) graphs; ``label`` follows the data set's name in the progress lines."""
    for model in MODELS:
        for regime in regimes:
            for seed in range(seeds):
                key = f"{model}/{regime}/{seed}"
                if key in entry["runs"]:
                    continue
                graphs, w = pick(regime, seed)
                val, test = (held_out or {}).get(regime, (splits.val, splits.test))
                config = TrainConfig(**{**vars(train_config), "seed": seed})
                result = train_gnn(graphs, w, val, test, spec, splits.num_classes,
                                   ModelConfig(model=model, num_layers=distilled.depth), config)
                nbytes = distilled.nbytes if w is not None else graphs_nbytes(graphs, regime == "random_compact")
                entry["runs"][key] = {"graphs": len(graphs), "bytes": nbytes, **{f"test_{k}": v for k, v in result.test.items()}}
                save_state(state, [name])
                print(f"  {name}{label} {key}: test ROC-AUC {result.test['roc_auc']:.3f}", flush=True)


def run_dataset(name: str, splits, seeds: int, train_config: TrainConfig, state: dict) -> dict:
    entry = state["datasets"].setdefault(name, {"runs": {}})
    start = time.process_time()
    distilled = distill(splits, DistillConfig())
    entry["distill_cpu_seconds"] = time.process_time() - start
    if (entry.get("distilled_bytes"), entry.get("patterns")) != (distilled.nbytes, distilled.num_patterns):
        # another distilled set: only the full-data runs still hold
        entry["runs"] = {k: v for k, v in entry["runs"].items() if k.split("/")[1] == "full"}
    entry.update(
        num_classes=splits.num_classes,
        train_graphs=len(splits.train),
        val_graphs=len(splits.val),
        test_graphs=len(splits.test),
        patterns=distilled.num_patterns,
        min_support=distilled.meta["min_support"],
        sweep=distilled.meta["sweep"],
        original_bytes=distilled.original_nbytes,
        distilled_bytes=distilled.nbytes,
        compression_ratio=distilled.compression_ratio,
        original_compact_bytes=distilled.original_compact_nbytes,
        compact_compression_ratio=distilled.compact_compression_ratio,
    )
    mirage_graphs, weights = distilled.to_graphs()
    covered_val, covered_test = with_covered_readout(distilled, splits.val), with_covered_readout(distilled, splits.test)
    covered = covered_roots(distilled, splits.test)
    entry["covered_test_nodes"] = float(torch.cat(covered).float().mean())  # share of test nodes whose tree the set holds
    entry["uncovered_test_graphs"] = float(np.mean([not bool(c.any()) for c in covered]))

    def pick(regime: str, seed: int):
        if regime == "full":
            return splits.train, None
        if regime in ("mirage", "covered"):
            return mirage_graphs, weights
        if regime in ("random", "random_compact"):
            return random_subset_of_bytes(splits.train, distilled.nbytes, seed, regime == "random_compact"), None
        return k_center_subset_of_bytes(splits.train, distilled.nbytes, spec, seed), None

    spec = FeatureSpec.of(torch.cat([g.x for g in splits.all_graphs()]))
    train_regimes(entry, name, splits, spec, REGIMES, seeds, pick, distilled, train_config, state,
                  held_out={"covered": (covered_val, covered_test)})
    return entry


def run_budget(name: str, splits, ratio: float, seeds: int, train_config: TrainConfig, state: dict) -> dict:
    """Mirage within ``ratio`` x of the training set with both counted in compact bytes, against a random subset
    of the same compact bytes: the comparison that does not depend on how the full data is stored."""
    budgets = state["datasets"][name].setdefault("budgets", {})
    entry = budgets.setdefault(f"{ratio:g}", {"runs": {}})
    distilled = distill(splits, DistillConfig(min_compression=ratio, compact_bytes=True))
    if (entry.get("distilled_bytes"), entry.get("patterns")) != (distilled.nbytes, distilled.num_patterns):
        entry["runs"] = {}
    entry.update(patterns=distilled.num_patterns, min_support=distilled.meta["min_support"],
                 distilled_bytes=distilled.nbytes, compact_compression_ratio=distilled.compact_compression_ratio)
    mirage_graphs, weights = distilled.to_graphs()

    def pick(regime: str, seed: int):
        if regime == "mirage":
            return mirage_graphs, weights
        return random_subset_of_bytes(splits.train, distilled.nbytes, seed, compact=True), None

    spec = FeatureSpec.of(torch.cat([g.x for g in splits.all_graphs()]))
    train_regimes(entry, name, splits, spec, BUDGET_REGIMES, seeds, pick, distilled, train_config, state,
                  label=f" >= {ratio:g}x compact")
    entry["summary"] = {f"{model}/{regime}": mean_std([entry["runs"][f"{model}/{regime}/{s}"]["test_roc_auc"] for s in range(seeds)])
                        for model in MODELS for regime in BUDGET_REGIMES}
    return entry


def summarise(entry: dict, seeds: int) -> dict:
    summary = {}
    for model in MODELS:
        for regime in REGIMES:
            runs = [entry["runs"][f"{model}/{regime}/{s}"] for s in range(seeds)]
            summary[f"{model}/{regime}"] = {
                "roc_auc": mean_std([r["test_roc_auc"] for r in runs]),
                "accuracy": mean_std([r["test_accuracy"] for r in runs]),
                "bytes": runs[0]["bytes"],
            }
        full = summary[f"{model}/full"]["roc_auc"]["mean"]
        summary[f"{model}/mirage_over_full"] = summary[f"{model}/mirage"]["roc_auc"]["mean"] / full
        summary[f"{model}/covered_over_full"] = summary[f"{model}/covered"]["roc_auc"]["mean"] / full
    return summary


def print_table(state: dict, names: list[str]) -> None:
    for name in names:
        entry = state["datasets"][name]
        s = entry["summary"]
        print(
            f"\n{name}: {entry['train_graphs']} training graphs, {entry['original_bytes'] / 1e3:.0f} kB -> "
            f"{entry['patterns']} patterns, {entry['distilled_bytes'] / 1e3:.1f} kB ({entry['compression_ratio']:.0f}x smaller; "
            f"{entry['compact_compression_ratio']:.1f}x with the training graphs in compact bytes), "
            f"distilled in {entry['distill_cpu_seconds']:.2f} s CPU (support {entry['min_support']})"
        )
        print(f"load average during the runs: {entry.get('load_average')}")
        print(f"{'model':6}" + "".join(f"{r + ' ROC-AUC':>20}{r + ' acc':>16}" for r in REGIMES) + f"{'mirage/full':>13}{'covered/full':>15}")
        for model in MODELS:
            row = f"{model:6}"
            for regime in REGIMES:
                m = s[f"{model}/{regime}"]
                row += f"{m['roc_auc']['mean']:>13.3f} ± {m['roc_auc']['std']:.3f}{m['accuracy']['mean']:>9.3f} ± {m['accuracy']['std']:.3f}"
            print(row + f"{s[f'{model}/mirage_over_full']:>13.2f}{s[f'{model}/covered_over_full']:>15.2f}")
        for ratio, budget in entry.get("budgets", {}).items():
            print(f">= {ratio}x in compact bytes: {budget['patterns']} patterns, {budget['distilled_bytes'] / 1e3:.1f} kB "
                  f"({budget['compact_compression_ratio']:.0f}x, support {budget['min_support']})")
            for model in MODELS:
                m, r = budget["summary"][f"{model}/mirage"], budget["summary"][f"{model}/random_compact"]
                full = s[f"{model}/full"]["roc_auc"]["mean"]
                print(f"  {model:6} Mirage {m['mean']:.3f} ± {m['std']:.3f} ({m['mean'] / full:.2f} of full)   "
                      f"random {r['mean']:.3f} ± {r['std']:.3f}")
    if "hashing" not in state:
        return
    h = state["hashing"]
    print(
        f"\ntree hashing, depth {h['depth']}: {h['nodes']} nodes / {h['edges']} directed edges in {h['cpu_seconds']:.2f} s CPU "
        f"(1 thread) = {h['nodes_per_second'] / 1e3:.0f}k nodes/s; {h['distinct_trees']} distinct trees"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 seeds, 15 epochs, nci-tpsa cut to 1500 molecules")
    parser.add_argument("--fresh", action="store_true", help="ignore finished runs saved in the results JSON")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per model and regime (default 5; --quick: 2)")
    parser.add_argument("--datasets", nargs="+", choices=("solubility", "nci-tpsa"), default=["solubility", "nci-tpsa"],
                        help="data sets to run (the others' results in the JSON are kept)")
    parser.add_argument("--budgets", type=float, nargs="*", default=[50.0],
                        help="compression ratios, counted in compact bytes on both sides, at which Mirage is "
                             "compared with a random subset of equal bytes (none: skip)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = args.seeds or (2 if args.quick else 5)
    train_config = TrainConfig(epochs=15 if args.quick else 20)
    setup = {"quick": args.quick, "seeds": seeds, "train": vars(train_config)}
    state = {}
    if RESULTS.exists() and not args.fresh:
        state = json.loads(RESULTS.read_text())
        if {**state.get("setup", {}), "seeds": seeds} != setup:
            state = {}  # results of another configuration: start over (another seed count keeps its runs)
    state["setup"] = setup
    state.setdefault("datasets", {})
    loaders = {
        "solubility": lambda: load_solubility(SplitConfig()),
        "nci-tpsa": lambda: load_nci_tpsa(SplitConfig(), max_molecules=1500 if args.quick else None),
    }
    for name in args.datasets:
        splits = loaders[name]()
        print(f"{name}: {len(splits.train)} / {len(splits.val)} / {len(splits.test)} graphs", flush=True)
        entry = run_dataset(name, splits, seeds, train_config, state)
        entry["load_average"] = list(os.getloadavg())  # the machine is shared: CPU times are read under this load
        entry["summary"] = summarise(entry, seeds)
        for ratio in args.budgets:
            run_budget(name, splits, ratio, seeds, train_config, state)
        if name == "solubility":
            state["hashing"] = hashing_throughput(splits.all_graphs())
        save_state(state, args.datasets)
    print_table(state, args.datasets)


if __name__ == "__main__":
    main()
