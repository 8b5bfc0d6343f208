"""Graph scale benchmark: VQGraph past full-batch memory, on this machine.

    python benchmarks/graph_scale.py --full-sizes 50000 100000 150000   # 2.1M nodes / ~52M edges (what we ran)
    python benchmarks/graph_scale.py --quick         # 200k-node mini-batch graph, full-batch at 25k/50k

Each stage runs in a fresh process under an address-space cap (``--cap-gib``, default 8; the machine
is shared) so that a run that would not fit fails alone instead of swapping:

- ``minibatch`` (run first; the JSON is rewritten after every stage): the products-size
  planted-partition graph (``graphdistill.data.large``: 47 classes, 100-d class-dependent features
  memory-mapped on disk, CSR straight from chunks); the mini-batch SAGE teacher (fan-outs 10,5,
  batch 1024) for one epoch over ``--teacher-seeds`` training seeds; layer-wise inference over
  *all* nodes in chunks to memory-mapped ``.npy``; the MLP student(s) for one epoch over the first
  ``--student-nodes`` nodes, reading those files without the graph. Epochs and seed/node subsets are
  kept small on purpose (written to the JSON): this measures memory and time on a shared 2-core
  machine, not accuracy (accuracies are reported for what those steps reach).
- ``fullbatch``: the same graph family at a few sizes, one full-batch teacher epoch plus its full
  forward (``train_teacher``); peak RSS is fitted linearly in the node count (mean degree fixed) and
  extrapolated to where it passes the cap and this machine's memory.

Peak RSS is ``ru_maxrss`` of the stage's process (file-backed pages of the memory-mapped arrays that
were touched count too). Writes ``benchmarks/results/graph_scale.json``; its ``mirage`` key is left for
``benchmarks/graph_scale_mirage.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "graph_scale.json"
GIB = 1 << 30


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # ru_maxrss is KiB on Linux


def _graph(nodes: int, avg_degree: float, work: Path, seed: int = 0):
    from graphdistill.data.large import LargeSBMConfig, large_sbm_graph

    return large_sbm_graph(LargeSBMConfig(num_nodes=nodes, avg_degree=avg_degree), seed=seed,
                           feature_file=work / "x.npy")


def _teacher_config():
    from graphdistill.vqgraph.config import TeacherConfig

    return TeacherConfig(architecture="sage", hidden_dim=128, code_dim=64, codebook_size=256)


def stage_minibatch(args) -> dict:
    import torch

    from graphdistill.vqgraph.config import DistillConfig, MiniBatchConfig, StudentConfig, TrainConfig
    from graphdistill.vqgraph.layerwise import layerwise_inference, load_targets
    from graphdistill.vqgraph.minibatch import train_teacher_minibatch
    from graphdistill.vqgraph.trainer import accuracy, train_student

    work = Path(args.work)
    out: dict = {"nodes": args.nodes}
    t0 = time.perf_counter()
    graph = _graph(args.nodes, args.avg_degree, work)
    out["generate"] = {"seconds": time.perf_counter() - t0, "peak_rss_gib": _peak_rss_gib(),
                       "directed_edges": graph.csr.num_edges, "undirected_edges": graph.csr.num_edges // 2,
                       "csr_gib": (graph.csr.indices.numel() + graph.csr.indptr.numel()) * 8 / GIB,
                       "features_gib_on_disk": graph.x.nbytes / GIB}
    print("generated", out["generate"], flush=True)
    x = torch.from_numpy(graph.x)
    # 32768-target chunks: neighbours shared inside a chunk are read once (~1.1M distinct of 1.6M at 2M nodes)
    minibatch = MiniBatchConfig(fanouts=[10, 5], batch_size=1024, chunk_size=32768)
    t0 = time.perf_counter()
    # a random seed subset bounds the teacher's steps (--teacher-seeds); validation on a random val subset.
    # Random, not a prefix: blocks are consecutive id ranges, a prefix of the sorted ids holds few classes.
    pick = torch.Generator().manual_seed(0)
    train_seeds = graph.train[torch.randperm(graph.train.numel(), generator=pick)[: args.teacher_seeds]]
    val_nodes = graph.val[torch.randperm(graph.val.numel(), generator=pick)[: args.val_nodes]]
    teacher, fit = train_teacher_minibatch(x, graph.csr, graph.y, train_seeds, val_nodes, graph.num_classes,
                                           _teacher_config(), TrainConfig(epochs=args.teacher_epochs, patience=5),
                                           minibatch, progress=False)
    out["teacher"] = {"seconds": time.perf_counter() - t0, "peak_rss_gib": _peak_rss_gib(),
                      "epochs": args.teacher_epochs, "val_acc_sampled": fit.best_val_acc,
                      "train_seeds": train_seeds.numel(), "val_nodes": val_nodes.numel(),
                      "steps_per_epoch": -(-train_seeds.numel() // minibatch.batch_size)}
    print("teacher", out["teacher"], flush=True)
    t0 = time.perf_counter()
    outputs = layerwise_inference(teacher, x, graph.csr, work / "targets", minibatch.chunk_size)
    logits = load_targets(outputs, teacher.codebook, "cosine").logits
    out["inference"] = {"seconds": time.perf_counter() - t0, "peak_rss_gib": _peak_rss_gib(),
                        "chunk_size": minibatch.chunk_size,
                        "teacher_test_acc": accuracy(logits[graph.test], graph.y[graph.test]),
                        "codebook": outputs.codebook_usage}
    print("inference", out["inference"], flush=True)
    targets = load_targets(outputs, teacher.codebook, "cosine")
    # the students train on --student-nodes random nodes (rows of the memory-mapped targets, no graph)
    m = min(args.student_nodes, graph.num_nodes)
    subset = torch.randperm(graph.num_nodes, generator=pick)[:m].sort().values
    position = torch.full((graph.num_nodes,), -1, dtype=torch.long)
    position[subset] = torch.arange(m)
    targets = type(targets)(targets.logits[subset], targets.embedding[subset], targets.codebook, targets.similarity)
    train_s = position[graph.train][position[graph.train] >= 0]
    val_s = position[val_nodes][position[val_nodes] >= 0]
    for mode in args.students.split(","):
        t0 = time.perf_counter()
        student, _ = train_student(x[subset], graph.y[subset], train_s, val_s, graph.num_classes, mode,
                                   StudentConfig(hidden_dim=128), DistillConfig(),
                                   TrainConfig(epochs=args.student_epochs, lr=0.005, weight_decay=1e-4, batch_size=4096),
                                   targets, progress=False)
        with torch.no_grad():
            test = graph.test[torch.randperm(graph.test.numel(), generator=pick)[:200_000]]
            test_acc = accuracy(student(x[test]), graph.y[test])
        out[f"student_{mode}"] = {"seconds": time.perf_counter() - t0, "peak_rss_gib": _peak_rss_gib(),
                                  "epochs": args.student_epochs, "student_nodes": m, "test_acc_200k_random_test_nodes": test_acc}
        print(mode, out[f"student_{mode}"], flush=True)
    return out


def stage_fullbatch(args) -> dict:
    import torch

    from graphdistill.vqgraph.config import TrainConfig
    from graphdistill.vqgraph.trainer import accuracy, train_teacher

    graph = _graph(args.nodes, args.avg_degree, Path(args.work))
    x = torch.from_numpy(graph.x)
    edge_index = graph.csr.to_edge_index()
    before = _peak_rss_gib()
    t0 = time.perf_counter()
    run = train_teacher(x, edge_index, graph.y, graph.train, graph.val, graph.num_classes, _teacher_config(),
                        TrainConfig(epochs=1), progress=False)
    return {"nodes": args.nodes, "directed_edges": graph.csr.num_edges, "seconds": time.perf_counter() - t0,
            "peak_rss_gib": _peak_rss_gib(), "peak_rss_before_training_gib": before,
            "teacher_test_acc": accuracy(run.targets.logits[graph.test], graph.y[graph.test])}


def _run_stage(stage: str, nodes: int, args, timeout_s: float) -> dict:
    """One stage in a fresh interpreter with RLIMIT_AS = cap: an out-of-memory run fails alone."""
    cap = int(args.cap_gib * GIB)

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    with tempfile.TemporaryDirectory(prefix="graph-scale-", dir=args.scratch) as work:
        cmd = [sys.executable, __file__, "--stage", stage, "--nodes", str(nodes), "--work", work,
               "--avg-degree", str(args.avg_degree), "--teacher-epochs", str(args.teacher_epochs),
               "--student-epochs", str(args.student_epochs), "--threads", str(args.threads),
               "--teacher-seeds", str(args.teacher_seeds), "--val-nodes", str(args.val_nodes),
               "--student-nodes", str(args.student_nodes), "--students", args.students]
        t0 = time.perf_counter()
        lines = []
        with open(Path(work) / "stderr.txt", "w+") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, preexec_fn=limit)
            for line in proc.stdout:  # progress lines of the stage, then its JSON
                print(f"  [{stage} {nodes}] {line.rstrip()[:300]}", flush=True)
                lines.append(line)
            code = proc.wait(timeout=timeout_s)
            err.seek(0)
            errors = err.read().strip().splitlines()
    if code != 0:
        tail = next((e for e in reversed(errors) if "Error" in e), errors[-1] if errors else f"exit code {code}")
        return {"nodes": nodes, "fits": False, "seconds": time.perf_counter() - t0, "exit_code": code,
                "error": tail[:300]}
    result = json.loads(lines[-1])
    result["fits"] = True
    return result


def _extrapolate(full: list[dict], args) -> dict | None:
    """Linear fit of full-batch peak RSS in the node count; where it crosses the cap and the machine's memory."""
    fitted = [r for r in full if r["fits"]]
    if len(fitted) < 2:
        return None
    import numpy as np

    n = np.array([r["nodes"] for r in fitted], dtype=float)
    peak = np.array([r["peak_rss_gib"] for r in fitted])
    slope, intercept = (float(v) for v in np.polyfit(n, peak, 1))
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    return {
        "model": "peak_rss_gib = intercept + slope * nodes (mean degree fixed)",
        "slope_gib_per_million_nodes": slope * 1e6, "intercept_gib": intercept,
        "nodes_at_cap": (args.cap_gib - intercept) / slope, "machine_memory_gib": machine,
        "nodes_at_machine_memory": (machine - intercept) / slope,
        "predicted_peak_gib_at_minibatch_size": intercept + slope * args.nodes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--nodes", type=int, default=2_100_000, help="mini-batch graph size")
    parser.add_argument("--full-sizes", type=int, nargs="+", default=[50_000, 100_000, 200_000])
    parser.add_argument("--avg-degree", type=float, default=50.0)  # ogbn-products: 2 x 61.9M / 2.45M = 50.5
    parser.add_argument("--teacher-epochs", type=int, default=1)
    parser.add_argument("--student-epochs", type=int, default=1)
    parser.add_argument("--teacher-seeds", type=int, default=32768, help="training seeds of the teacher's epoch")
    parser.add_argument("--val-nodes", type=int, default=8192, help="validation nodes scored per epoch")
    parser.add_argument("--student-nodes", type=int, default=500_000, help="nodes the students train on")
    parser.add_argument("--students", default="vqgraph", help="comma-separated: glnn,vqgraph")
    parser.add_argument("--skip-full", action="store_true", help="keep the full-batch rows of the JSON")
    parser.add_argument("--cap-gib", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scratch", default=None, help="folder for the memory-mapped arrays (default: $TMPDIR)")
    parser.add_argument("--stage", choices=["minibatch", "fullbatch"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:  # child process: one stage, its JSON on the last stdout line
        import torch

        torch.set_num_threads(args.threads)
        result = (stage_minibatch if args.stage == "minibatch" else stage_fullbatch)(args)
        print(json.dumps(result))
        return
    if args.quick:
        args.nodes, args.full_sizes, args.student_nodes = 200_000, [25_000, 50_000], 100_000

    from distillcore.serialization import write_json_atomic

    result = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    result.update({
        "machine": {"cpus": os.cpu_count(), "threads": args.threads, "cap_gib": args.cap_gib,
                    "note": "2 cores shared with 7 other jobs while measured (load average ~20): times are upper bounds"},
        "settings": {"avg_degree": args.avg_degree, "teacher": "SAGE 2 layers, hidden 128, codebook 256 x 64",
                     "fanouts": [10, 5], "batch_size": 1024, "teacher_epochs": args.teacher_epochs,
                     "teacher_seeds": args.teacher_seeds, "val_nodes": args.val_nodes,
                     "student_epochs": args.student_epochs, "student_nodes": args.student_nodes,
                     "epochs_note": "one teacher epoch over a seed subset and one student epoch over a node subset: "
                                    "a memory and time measurement on a shared 2-core machine, not an accuracy one"},
    })
    result.setdefault("mirage", None)  # written by benchmarks/graph_scale_mirage.py
    result["minibatch"] = _run_stage("minibatch", args.nodes, args, 3 * 3600)
    print("mini-batch", result["minibatch"], flush=True)
    write_json_atomic(RESULTS, result)
    if not args.skip_full:
        full = []
        for n in args.full_sizes:
            full.append(_run_stage("fullbatch", n, args, 3600))
            print("full-batch", full[-1], flush=True)
            result["fullbatch"] = {"runs": full, "extrapolation": _extrapolate(full, args)}
            write_json_atomic(RESULTS, result)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
