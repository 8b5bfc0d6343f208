"""``graphdistill vqgraph``: train a GNN teacher + codebook and distil it into an MLP student."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from graphdistill.vqgraph.config import ARCHITECTURES, SETTINGS, VQGraphConfig


def add_parser(subparsers, name: str, help: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help, description=help)
    sub = parser.add_subparsers(dest="vqgraph_command", metavar="ACTION")

    train = sub.add_parser("train", help="train teacher + students on a node-classification graph and save the student",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--dataset", default="digits",
                       help="digits, karate or sbm (offline), or cora/citeseer/pubmed/computers/photo/ogbn-arxiv (needs --root)")
    train.add_argument("--root", default=None, help="folder holding the public data set's files (nothing is downloaded)")
    train.add_argument("--setting", choices=SETTINGS, default="transductive",
                       help="transductive, inductive (20%% of test nodes and their edges held out) or production (same split, 0.8/0.2 score)")
    train.add_argument("--public-split", action="store_true", help="use the data set's own train/val/test masks")
    train.add_argument("--teacher", choices=ARCHITECTURES, default=None, help="teacher GNN; unset keeps the config value (sage)")
    train.add_argument("--codebook-size", type=int, default=None, help="number of codes K; unset keeps the config value (256)")
    train.add_argument("--code-dim", type=int, default=None, help="code dimension; unset keeps the config value (64)")
    train.add_argument("--students", default="mlp,glnn,vqgraph",
                       help="comma-separated students to train; the last one is saved as student.pt")
    train.add_argument("--config", type=Path, default=None,
                       help="JSON file with any VQGraphConfig fields (teacher, student, distill, teacher_train, student_train, split)")
    train.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and sampling")
    train.add_argument("--out", type=Path, default=Path("runs/vqgraph"),
                       help="output folder: student.pt, student.ts (TorchScript), metrics.json, config.json; checkpoints/ while training")
    train.add_argument("--no-progress", action="store_true", help="hide the tqdm progress bars")
    train.set_defaults(func=_train)

    export = sub.add_parser("export", help="export a saved student to TorchScript (features [N, F] -> logits [N, C])")
    export.add_argument("--student", type=Path, required=True, help="student.pt written by `vqgraph train`")
    export.add_argument("--out", type=Path, required=True, help="TorchScript file to write")
    export.set_defaults(func=_export)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    return parser


def _train(args) -> int:
    from graphdistill.data.node import load_node_dataset
    from graphdistill.vqgraph.pipeline import run_experiment

    config = VQGraphConfig.from_dict(json.loads(args.config.read_text())) if args.config else VQGraphConfig()
    if args.teacher:
        config.teacher.architecture = args.teacher
    if args.codebook_size:
        config.teacher.codebook_size = args.codebook_size
    if args.code_dim:
        config.teacher.code_dim = args.code_dim
    students = tuple(s.strip() for s in args.students.split(",") if s.strip())
    data = load_node_dataset(args.dataset, args.root, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    result = run_experiment(data, args.setting, config, args.seed, students=students, public_split=args.public_split,
                            checkpoint_dir=args.out / "checkpoints", progress=not args.no_progress)
    metrics = {"dataset": args.dataset, "setting": args.setting, "seed": args.seed, "accuracy": result.accuracy,
               "codebook": result.codebook, "best_epochs": result.best_epochs, "isolated_nodes": result.isolated_nodes}
    (args.out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if students:
        saved = result.students[students[-1]]
        saved.save(args.out / "student.pt", extra={"mode": students[-1], "dataset": args.dataset, **metrics["accuracy"][students[-1]]})
        saved.export_torchscript(args.out / "student.ts")
    for method, scores in result.accuracy.items():
        print(f"{method:8s} " + "  ".join(f"{k}={v:.4f}" for k, v in scores.items()))
    print(f"codebook: {result.codebook['codes_used']} codes used, perplexity {result.codebook['perplexity']:.1f}")
    print(f"wrote {args.out}/")
    return 0


def _export(args) -> int:
    from graphdistill.vqgraph.student import MLPStudent

    MLPStudent.load(args.student).export_torchscript(args.out)
    print(f"wrote {args.out}")
    return 0
