"""Demo: VQGraph on the digits k-NN graph at demo size (about a minute on 2 CPU cores).

Trains the SAGE teacher + codebook, the MLP / GLNN / VQGraph students (transductive), saves the
VQGraph student, exports it to TorchScript, classifies all nodes from features alone, and times
inductive inference of the student vs the teacher on a 20k-node SBM graph.
"""
from __future__ import annotations

from pathlib import Path

import torch

from graphdistill.datasets import SBMConfig, digits_graph, sbm_graph
from graphdistill.vqgraph.config import StudentConfig, TeacherConfig, TrainConfig, VQGraphConfig
from graphdistill.vqgraph.latency import inductive_latency
from graphdistill.vqgraph.pipeline import run_experiment
from graphdistill.vqgraph.student import MLPStudent
from graphdistill.vqgraph.teacher import VQGNNTeacher

DEMO_CONFIG = VQGraphConfig(
    teacher=TeacherConfig(hidden_dim=64, codebook_size=128, code_dim=32),
    student=StudentConfig(hidden_dim=64),
    teacher_train=TrainConfig(epochs=80, patience=25),
    student_train=TrainConfig(epochs=150, patience=40, lr=0.005, weight_decay=1e-4),
)
DEMO_SBM_NODES = 20_000
DEMO_TIMED_NODES = 10


def demo(out_dir: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small graphs: OpenMP threads only add overhead on a shared CPU
    try:
        data = digits_graph()
        result = run_experiment(data, "transductive", DEMO_CONFIG, seed=0, checkpoint_dir=out_dir / "checkpoints",
                                progress=False)
        student = result.students["vqgraph"]
        student.save(out_dir / "student.pt", extra=result.accuracy["vqgraph"])
        student.export_torchscript(out_dir / "student.ts")
        labels, _ = MLPStudent.load(out_dir / "student.pt").predict(data.x)
        scripted = torch.jit.load(str(out_dir / "student.ts"))
        torchscript_matches = bool(torch.equal(scripted(data.x).argmax(-1), labels))
        sbm = sbm_graph(SBMConfig(num_nodes=DEMO_SBM_NODES))
        nodes = torch.randperm(sbm.num_nodes, generator=torch.Generator().manual_seed(0))[:DEMO_TIMED_NODES]
        latency = inductive_latency(VQGNNTeacher(sbm.num_features, sbm.num_classes, DEMO_CONFIG.teacher),
                                    MLPStudent(sbm.num_features, sbm.num_classes, DEMO_CONFIG.student), sbm, nodes)
    finally:
        torch.set_num_threads(threads)

    methods = list(result.accuracy)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(methods, [100 * result.accuracy[m]["test"] for m in methods], color=["gray", "tab:red", "tab:orange", "tab:blue"])
    ax.set_ylim(80, 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("digits 10-NN graph, transductive")
    fig.tight_layout()
    fig.savefig(out_dir / "vqgraph_accuracy.png", dpi=120)
    plt.close(fig)
    return {
        **{f"{m}_test_acc": round(result.accuracy[m]["test"], 4) for m in methods},
        "codes_used": result.codebook["codes_used"],
        "codebook_perplexity": round(result.codebook["perplexity"], 2),
        "all_nodes_predicted_from_features": int(labels.numel()),
        "torchscript_matches_eager": str(torchscript_matches),
        "teacher_inductive_ms_10_nodes": round(latency["teacher_ms"], 2),
        "student_ms_10_nodes": round(latency["student_ms"], 3),
        "student_speedup": round(latency["speedup"], 1),
    }
