"""`graphdistill mirage`: distil a graph-classification data set into frequent computation trees,
then train a GNN on the distilled file and evaluate it on the original validation / test graphs."""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from distillcore.config_cli import (add_config_arguments, add_config_file_arguments, add_run_options,
                                    apply_run_options, config_from_args, save_resolved_config, to_dict)
from distillcore.runs import RunDirectory, check_output_is_not_input
from distillcore.serialization import save_atomic, to_json

from ..data.graphs import OFFLINE_DATASETS, GraphArrays, SplitConfig, load_graph_dataset, load_ogb_graph_arrays
from .cluster import ClusterConfig
from .distill import DistillConfig, distill
from .distilled import DistilledDataset
from .models import ModelConfig
from .train import TrainConfig, train_gnn


@dataclasses.dataclass
class MirageDistillCommand:
    """`graphdistill mirage distill` options outside the distillation config."""
    # your own graphs instead of DATASET: a torch.save file of a list of dicts of tensors {x, edge_index, y
    # [, edge_attr]} (torch.save([g.to_dict() for g in graphs], 'graphs.pt')), split by --val-fraction /
    # --test-fraction, or of a dict with train / val / test lists; or a folder of arrays (GraphArrays.save:
    # .npy files, own split, multi-task labels allowed)
    dataset_file: str | None = None
    root: str | None = None  # folder holding OGB / TU data set files (not needed for the offline sets)
    out: str | None = None  # distilled file to write (default: <dataset>.mirage.pt)
    # relative support threshold(s) set by hand: one value for all classes or one per class; skips the sweep
    support: tuple[float, ...] = ()
    split: SplitConfig = dataclasses.field(default_factory=SplitConfig)  # train / val / test split of the graphs
    overwrite: bool = False  # replace an existing file at --out (else this fails)
    # hashing / mining processes: --workers N starts Ray on this machine, --address HOST:PORT joins a cluster
    # (needs the [dist] extra); the distilled file is the same either way
    cluster: ClusterConfig = dataclasses.field(default_factory=ClusterConfig)


@dataclasses.dataclass
class MirageTrainCommand:
    """`graphdistill mirage train` options outside the model and training configs."""
    root: str | None = None  # folder of the original data set files (OGB / TU only)
    # evaluation graphs (same format as `distill --dataset-file`); default: the data set or file recorded in
    # the distilled file, split as it was
    dataset_file: str | None = None
    layers: int | None = None  # GNN layers (None: the tree depth; more than the depth loses exactness)
    # sample patterns by their raw weights over all classes (readout masses; the paper uses support counts)
    # instead of by weight within each class times the class's share of the training graphs
    raw_frequency: bool = False
    # evaluate with the readout over the nodes whose computation tree the set holds (the Mirage reference
    # code's protocol; graphdistill.mirage.covered) instead of over every node
    covered_readout: bool = False
    out: str | None = None  # where to save the trained model's state dict (default: none)
    overwrite: bool = False  # replace an existing file at --out (else this fails)


DISTILL_ALIASES = {"discretize.num_bins": "--num-bins", "mining.multiset": "--multiset",
                   "mining.exclusive": "--exclusive", "mining.max_pattern_size": "--max-pattern-size",
                   "split.seed": "--split-seed", "split.val_fraction": "--val-fraction",
                   "split.test_fraction": "--test-fraction", "cluster.workers": "--workers",
                   "cluster.address": "--address", "cluster.shards": "--shards",
                   "cluster.connect_timeout": "--connect-timeout"}


def add_parser(subparsers, name: str, help: str) -> None:
    parser = subparsers.add_parser(name, help=help, description=__doc__)
    sub = parser.add_subparsers(dest="mirage_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    d = sub.add_parser("distill", help="mine per-class frequent computation trees into one file (no model is trained)",
                       description="Mine per-class frequent computation trees into one file; the resolved config "
                                   "is written beside it (OUT's stem + .config.json).")
    d.add_argument("dataset", nargs="?", default=None,
                   help=f"{' | '.join(OFFLINE_DATASETS)} (offline), ogbg-<name> (local OGB files under --root; "
                        "multi-task sets such as ogbg-molpcba too) or tu:<NAME> (local files under --root)")
    add_config_file_arguments(d)
    add_config_arguments(d, MirageDistillCommand, group_title="command", aliases=DISTILL_ALIASES)
    add_config_arguments(d, DistillConfig, group_title="distillation config (DistillConfig)",
                         aliases=DISTILL_ALIASES)
    add_run_options(d)
    d.set_defaults(func=_distill)

    t = sub.add_parser("train", help="train a GNN on a distilled file; evaluate on the original val/test graphs")
    t.add_argument("distilled", help="file written by `graphdistill mirage distill`")
    add_config_file_arguments(t)
    add_config_arguments(t, MirageTrainCommand, group_title="command")
    add_config_arguments(t, ModelConfig, group_title="model config (ModelConfig; layers: --layers)",
                         skip=("num_layers",))
    add_config_arguments(t, TrainConfig, group_title="training config (TrainConfig)", skip=("progress",))
    add_run_options(t)
    t.set_defaults(func=_train)


def _distill(args: argparse.Namespace) -> int:
    from ..data.graphs import load_graph_file

    apply_run_options(args)
    command = config_from_args(MirageDistillCommand, args)
    config = config_from_args(DistillConfig, args)
    if command.support:  # set by hand: no validation sweep
        config.mining.min_support = command.support[0] if len(command.support) == 1 else list(command.support)
        config.sweep = None
    for f in dataclasses.fields(command):
        setattr(args, f.name, getattr(command, f.name))
    if (args.dataset is None) == (args.dataset_file is None):
        raise ValueError("give either a DATASET name or --dataset-file FILE (exactly one)")
    split = command.split
    command.cluster.validate()  # a bad --workers / --address fails before any data is read
    if args.dataset_file is not None and Path(args.dataset_file).is_dir():  # GraphArrays.save's folder, own split
        data = GraphArrays.load(args.dataset_file)
        source = {"kind": "file", "path": os.path.abspath(args.dataset_file)}
    elif args.dataset_file is not None:
        data = load_graph_file(args.dataset_file, split)
        source = {"kind": "file", "path": os.path.abspath(args.dataset_file)}
    elif args.dataset.lower().startswith("ogbg-"):  # arrays: 438k molpcba graphs need no Python object each
        if args.root is None:
            raise ValueError(f"data set {args.dataset!r} is read from local files: pass --root <folder holding it>")
        data = load_ogb_graph_arrays(args.root, args.dataset.lower())
        source = {"kind": "builtin", "name": args.dataset, "root": os.path.abspath(args.root)}
    else:
        data = load_graph_dataset(args.dataset, args.root, split)
        source = {"kind": "builtin", "name": args.dataset, "root": None if args.root is None else os.path.abspath(args.root)}
    out = Path(args.out or f"{Path(data.name).stem.replace(':', '_')}.mirage.pt")
    if args.dataset_file is not None:
        check_output_is_not_input(out, args.dataset_file)
    with _output_file(out, args.overwrite):  # checked writable, locked, not replacing a file unasked
        distilled = distill(data, config, split=None if isinstance(data, GraphArrays) else split, source=source,
                            cluster=command.cluster)
        file_bytes = distilled.save(out)
    saved = {k: v for k, v in to_dict(command).items() if k not in ("out", "overwrite", "cluster")}
    save_resolved_config({**saved, **to_dict(config)}, out.parent, name=out.stem + ".config.json")
    summary = {
        "out": str(out),
        "patterns": distilled.num_patterns,
        "min_support": distilled.meta["min_support"],
        "distilled_bytes": distilled.nbytes,
        "file_bytes": file_bytes,
        "original_bytes": distilled.original_nbytes,
        "compression_ratio": round(distilled.compression_ratio, 1),
        "original_compact_bytes": distilled.original_compact_nbytes,
        "compact_compression_ratio": round(distilled.compact_compression_ratio, 1),
        "cpu_seconds": round(distilled.meta["cpu_seconds"], 3),
        "workers": command.cluster.workers,
    }
    print(to_json(summary))
    return 0


def _output_file(out: Path, overwrite: bool) -> RunDirectory:
    """The guard of an output file (distillcore.runs): its folder writable, the file locked against a
    concurrent command, and an existing file replaced only with --overwrite."""
    return RunDirectory.for_file(out, fingerprint={}, overwrite=overwrite, record_info=False)


def _train(args: argparse.Namespace) -> int:
    args.run_options = apply_run_options(args)
    command = config_from_args(MirageTrainCommand, args)
    for f in dataclasses.fields(command):
        setattr(args, f.name, getattr(command, f.name))
    args.command_config = command
    args.model_config = config_from_args(ModelConfig, args)
    args.train_config = config_from_args(TrainConfig, args)
    args.train_config.progress = args.run_options.progress
    if args.out:
        check_output_is_not_input(args.out, args.distilled)
        with _output_file(Path(args.out), args.overwrite):
            return _train_to(args)
    return _train_to(args)


def _train_to(args: argparse.Namespace) -> int:
    from .train import check_feature_compatible, evaluation_splits

    distilled = DistilledDataset.load(args.distilled)
    if distilled.num_tasks > 1:  # the trainer fits one class per graph; a per-task masked loss is not written yet
        raise ValueError(f"{args.distilled} is a {distilled.num_tasks}-task distilled set: `mirage train` trains "
                         "single-task classifiers only (read its patterns with DistilledDataset.to_graphs: graph.task)")
    splits = evaluation_splits(distilled.meta, args.dataset_file, args.root)
    for name, graphs in (("validation", splits.val), ("test", splits.test)):
        check_feature_compatible(graphs, distilled.feature_spec, distilled.edge_features is not None, name,
                                 distilled.num_classes)
    graphs, weights = distilled.to_graphs(class_prior=not args.raw_frequency)
    val, test = splits.val, splits.test
    if args.covered_readout:
        from .covered import with_covered_readout

        val, test = with_covered_readout(distilled, val), with_covered_readout(distilled, test)
    result = train_gnn(
        graphs,
        weights,
        val,
        test,
        distilled.feature_spec,
        distilled.num_classes,
        dataclasses.replace(args.model_config, num_layers=distilled.depth if args.layers is None else args.layers),
        args.train_config,
    )
    if args.out:
        save_atomic(result.model.state_dict(), args.out)
        saved = {k: v for k, v in to_dict(args.command_config).items() if k not in ("out", "overwrite")}
        saved.update({**to_dict(args.model_config), **to_dict(args.train_config)})
        saved.pop("num_layers")
        saved.pop("progress")
        save_resolved_config(saved, Path(args.out).parent, name=Path(args.out).stem + ".config.json")
    print(to_json({"model": args.model_config.model, "best_epoch": result.best_epoch, "val": result.val, "test": result.test}))
    return 0
