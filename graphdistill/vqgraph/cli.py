"""``graphdistill vqgraph``: train a GNN teacher + codebook and distil it into an MLP student."""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
from pathlib import Path
from typing import Literal

from distillcore.config_cli import (DistOptions, add_config_arguments, add_config_file_arguments, add_dist_options,
                                    add_run_options, apply_run_options, config_from_args, explicit_overrides, merge,
                                    read_config_file, save_resolved_config, to_dict)
from distillcore.serialization import write_json_atomic
from distillcore.tracking import ScalarWriter
from graphdistill.vqgraph.config import SplitConfig, VQGraphConfig

# short flags kept from earlier releases
VQGRAPH_ALIASES = {"teacher.architecture": "--teacher", "teacher.codebook_size": "--codebook-size",
                   "teacher.code_dim": "--code-dim", "split.train_per_class": "--train-per-class",
                   "split.val_per_class": "--val-per-class", "split.train_fraction": "--train-fraction",
                   "split.val_fraction": "--val-fraction", "minibatch.fanouts": "--fanouts",
                   "minibatch.batch_size": "--batch-size"}


@dataclasses.dataclass
class VQGraphTrainCommand:
    """`graphdistill vqgraph train` options outside the VQGraph config."""
    # digits, karate or sbm (offline), or cora/citeseer/pubmed/computers/photo/ogbn-arxiv (needs --root);
    # karate's split defaults to 1 train + 1 val node per class (its smallest class has 4 nodes)
    dataset: str = "digits"
    root: str | None = None  # folder holding the public data set's files (nothing is downloaded)
    # your own graph instead of --dataset: a torch.save file of a dict of tensors {x, edge_index, y[, train_mask,
    # val_mask, test_mask]}; for a PyG Data: torch.save(data.to_dict(), 'g.pt'). Its masks are used when present,
    # else a random per-class split (--train-per-class ...)
    graph: Path | None = None
    # transductive, inductive (20% of test nodes and their edges held out) or production (same split, 0.8/0.2 score)
    setting: Literal["transductive", "inductive", "production"] = "transductive"
    public_split: bool = False  # use the data set's own train/val/test masks
    students: str = "mlp,glnn,vqgraph"  # comma-separated students to train; the last one is saved as student.pt
    seed: int = 0  # seed of the split, initialisation and sampling
    out: Path = Path("runs/vqgraph")  # output folder
    resume: bool = False  # continue the unfinished run in OUT (checkpoints/)
    overwrite: bool = False  # replace a run already in OUT (else this fails)


def add_parser(subparsers, name: str, help: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help, description=help)
    sub = parser.add_subparsers(dest="vqgraph_command", metavar="ACTION")

    train = sub.add_parser("train", help="train teacher + students on a node-classification graph and save the student",
                           description="Train a GNN teacher + codebook and distil it into MLP students; writes OUT/"
                                       "student.pt, student.ts (TorchScript), metrics.json and config.json (the "
                                       "resolved config: pass it back with --config); checkpoints/ while training.")
    add_config_file_arguments(train)
    add_config_arguments(train, VQGraphTrainCommand, group_title="command")
    add_config_arguments(train, VQGraphConfig, group_title="VQGraph config (VQGraphConfig)", aliases=VQGRAPH_ALIASES)
    add_run_options(train)
    add_dist_options(train)  # --nproc: ranks of the mini-batch teacher and the students (needs --fanouts)
    train.set_defaults(func=_train)

    export = sub.add_parser("export", help="export a saved student to TorchScript (features [N, F] -> logits [N, C])")
    export.add_argument("--student", type=Path, required=True, help="student.pt written by `vqgraph train`")
    export.add_argument("--out", type=Path, required=True, help="TorchScript file to write")
    export.set_defaults(func=_export)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    return parser


def _train(args) -> int:
    run_options = apply_run_options(args)
    command = config_from_args(VQGraphTrainCommand, args)
    for f in dataclasses.fields(command):  # the command's resolved values, where the run code reads them
        setattr(args, f.name, getattr(command, f.name))
    args.no_progress, args.command_config = not run_options.progress, command
    config = config_from_args(VQGraphConfig, args)
    if args.graph is None:
        config.split = _dataset_split(args, config.split)
    ranks = config_from_args(DistOptions, args)
    args.nproc, args.dist_timeout = ranks.nproc, ranks.dist_timeout
    if ranks.nproc > 1 and not config.minibatch.enabled:
        raise ValueError("--nproc > 1 trains the mini-batch teacher: give --fanouts too (e.g. --fanouts 15,10)")
    students = tuple(s.strip() for s in args.students.split(",") if s.strip())
    with _run_folder(args, config, students) as run:
        if run.resumed and (run.previous or {}).get("status") == "complete":
            print(f"{args.out}: already complete (nothing to do)")
            return 0
        return _train_run(args, config, students, run)


def _dataset_split(args, split: SplitConfig) -> SplitConfig:
    """``split`` with the built-in data set's own per-class counts (``graphdistill.data.node.SPLIT_PER_CLASS``)
    for each count the user left unset, by flag or in the --config file: SplitConfig's 20 + 30 labels per class
    do not fit karate's 4-node class."""
    from graphdistill.data.node import SPLIT_PER_CLASS

    sizes = SPLIT_PER_CLASS.get(args.dataset.lower())
    if sizes is None or split.train_fraction is not None:
        return split
    given = merge(read_config_file(args.config) if args.config else {}, explicit_overrides(args)).get("split", {})
    unset = {key: size for key, size in sizes.items() if key not in given}
    return dataclasses.replace(split, **unset)


def _run_folder(args, config: VQGraphConfig, students: tuple[str, ...]):
    """``--out`` guarded before any work (distillcore.runs: writable, locked, an existing run resumed only
    with --resume and the same inputs, replaced only with --overwrite)."""
    from distillcore.runs import DATASET_HASH, RunDirectory, run_fingerprint, scene_content_hash

    data = (hashlib.sha256(args.graph.read_bytes()).hexdigest() if args.graph is not None and args.graph.is_file()
            else scene_content_hash(args.root, DATASET_HASH) if args.root else None)
    fingerprint = run_fingerprint(config=config.to_dict(), dataset=str(args.graph or args.dataset), data=data,
                                  setting=args.setting, seed=args.seed, students=list(students),
                                  public_split=args.public_split)
    return RunDirectory(args.out, fingerprint=fingerprint, resume=args.resume, overwrite=args.overwrite,
                        markers=("student.pt", "metrics.json", "checkpoints"),
                        outputs=("student.ts", "config.json"))


def _train_run(args, config: VQGraphConfig, students: tuple[str, ...], run) -> int:
    from graphdistill.data.node import load_node_dataset
    from graphdistill.vqgraph.pipeline import run_experiment

    if args.graph is not None:
        from graphdistill.data.node import load_node_graph_file

        data, dataset = load_node_graph_file(args.graph), str(args.graph)
    else:
        data, dataset = load_node_dataset(args.dataset, args.root, seed=args.seed), args.dataset
    args.out.mkdir(parents=True, exist_ok=True)
    # a user's graph brings its own masks when it has them; the built-in sets need --public-split
    public = True if args.public_split else (None if args.graph is not None else False)
    result = run_experiment(data, args.setting, config, args.seed, students=students, public_split=public,
                            checkpoint_dir=args.out / "checkpoints", progress=not args.no_progress, nproc=args.nproc,
                            dist_timeout_s=args.dist_timeout)
    metrics = {"dataset": dataset, "setting": args.setting, "seed": args.seed, "accuracy": result.accuracy,
               "codebook": result.codebook, "best_epochs": result.best_epochs, "isolated_nodes": result.isolated_nodes}
    saved = {k: v for k, v in to_dict(args.command_config).items() if k not in ("out", "resume", "overwrite")}
    save_resolved_config({**saved, **config.to_dict()}, args.out)
    write_json_atomic(args.out / "metrics.json", metrics)
    with ScalarWriter(args.out / "tb") as tb:  # codebook usage and accuracies, when tensorboard is installed
        tb.add_scalars(result.codebook, 0, prefix="codebook/")
        for method, scores in result.accuracy.items():
            tb.add_scalars(scores, 0, prefix=f"accuracy/{method}/")
    if students:
        saved = result.students[students[-1]]
        saved.save(args.out / "student.pt", extra={"mode": students[-1], "dataset": dataset, **metrics["accuracy"][students[-1]]})
        saved.export_torchscript(args.out / "student.ts")
    for method, scores in result.accuracy.items():
        print(f"{method:8s} " + "  ".join(f"{k}={v:.4f}" for k, v in scores.items()))
    print(f"codebook: {result.codebook['codes_used']} codes used, perplexity {result.codebook['perplexity']:.1f}")
    run.complete()
    print(f"wrote {args.out}/")
    return 0


def _export(args) -> int:
    from distillcore.runs import check_output_is_not_input
    from graphdistill.vqgraph.student import MLPStudent

    check_output_is_not_input(args.out, args.student)
    MLPStudent.load(args.student).export_torchscript(args.out)
    print(f"wrote {args.out}")
    return 0
