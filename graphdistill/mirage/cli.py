"""`graphdistill mirage`: distil a graph-classification data set into frequent computation trees,
then train a GNN on the distilled file and evaluate it on the original validation / test graphs."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from ..data.graphs import OFFLINE_DATASETS, SplitConfig, load_graph_dataset
from .distill import DistillConfig, distill
from .distilled import DistilledDataset
from .labels import DiscretizeConfig
from .mining import MiningConfig
from .models import MODELS, ModelConfig
from .train import TrainConfig, train_gnn


def _supports(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_parser(subparsers, name: str, help: str) -> None:
    parser = subparsers.add_parser(name, help=help, description=__doc__)
    sub = parser.add_subparsers(dest="mirage_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    d = sub.add_parser("distill", help="mine per-class frequent computation trees into one file (no model is trained)")
    d.add_argument("dataset", help=f"{' | '.join(OFFLINE_DATASETS)} (offline), ogbg-<name> or tu:<NAME> (local files under --root)")
    d.add_argument("--root", default=None, help="folder holding OGB / TU data set files (not needed for the offline sets)")
    d.add_argument("--out", default=None, help="distilled file to write (default: <dataset>.mirage.pt)")
    d.add_argument("--depth", type=int, default=2, help="computation-tree depth L = GNN layers it serves (default 2)")
    d.add_argument(
        "--support",
        type=_supports,
        default=None,
        help="relative support threshold(s) set by hand: one value for all classes or one per class, comma-separated; "
        "skips the validation sweep",
    )
    d.add_argument(
        "--sweep",
        type=_supports,
        default=None,
        help="comma-separated relative supports the validation sweep tries (default: "
        + ",".join(map(str, DistillConfig().sweep))
        + ")",
    )
    d.add_argument("--min-compression", type=float, default=50.0, help="the sweep only keeps sets at least this many times smaller (default 50)")
    d.add_argument("--multiset", action="store_true", help="transactions are multisets of tree ids (repeated trees count)")
    d.add_argument("--exclusive", action="store_true", help="drop patterns that are frequent in more than one class")
    d.add_argument("--max-pattern-size", type=int, default=3, help="largest tree set mined (default 3; 0 = no limit)")
    d.add_argument("--num-bins", type=int, default=8, help="quantile bins per continuous feature column (default 8)")
    d.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split (default 0)")
    d.set_defaults(func=_distill)

    t = sub.add_parser("train", help="train a GNN on a distilled file; evaluate on the original val/test graphs")
    t.add_argument("distilled", help="file written by `graphdistill mirage distill`")
    t.add_argument("--model", choices=MODELS, default="gin", help="GNN layer type (default gin)")
    t.add_argument("--root", default=None, help="folder of the original data set files (OGB / TU only)")
    t.add_argument("--layers", type=int, default=None, help="GNN layers (default: the tree depth; more than the depth loses exactness)")
    t.add_argument("--hidden", type=int, default=64, help="hidden width (default 64)")
    t.add_argument("--epochs", type=int, default=40, help="epochs (default 40)")
    t.add_argument("--samples-per-epoch", type=int, default=1024, help="patterns drawn per epoch, by frequency (default 1024)")
    t.add_argument("--batch-size", type=int, default=64, help="patterns per batch (default 64)")
    t.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    t.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    t.add_argument(
        "--raw-frequency",
        action="store_true",
        help="sample patterns by raw frequency over all classes (the paper's weighting) instead of by frequency "
        "within each class times the class's share of the training graphs",
    )
    t.add_argument("--out", default=None, help="where to save the trained model's state dict (default: none)")
    t.set_defaults(func=_train)


def _distill(args: argparse.Namespace) -> int:
    splits = load_graph_dataset(args.dataset, args.root, SplitConfig(seed=args.split_seed))
    mining = MiningConfig(
        min_support=(args.support[0] if len(args.support) == 1 else args.support) if args.support else 0.2,
        multiset=args.multiset,
        exclusive=args.exclusive,
        max_pattern_size=args.max_pattern_size or None,
    )
    config = DistillConfig(
        depth=args.depth,
        discretize=DiscretizeConfig(num_bins=args.num_bins),
        mining=mining,
        sweep=None if args.support else (tuple(args.sweep) if args.sweep else DistillConfig().sweep),
        min_compression=args.min_compression,
    )
    distilled = distill(splits, config)
    distilled.meta.update(split_seed=args.split_seed, root=None if args.root is None else os.path.abspath(args.root))
    out = Path(args.out or f"{splits.name.replace(':', '_')}.mirage.pt")
    file_bytes = distilled.save(out)
    summary = {
        "out": str(out),
        "patterns": distilled.num_patterns,
        "min_support": distilled.meta["min_support"],
        "distilled_bytes": distilled.nbytes,
        "file_bytes": file_bytes,
        "original_bytes": distilled.original_nbytes,
        "compression_ratio": round(distilled.compression_ratio, 1),
        "cpu_seconds": round(distilled.meta["cpu_seconds"], 3),
    }
    print(json.dumps(summary, indent=2))
    return 0


def _train(args: argparse.Namespace) -> int:
    distilled = DistilledDataset.load(args.distilled)
    meta = distilled.meta
    splits = load_graph_dataset(meta["dataset"], args.root or meta.get("root"), SplitConfig(seed=meta.get("split_seed", 0)))
    graphs, weights = distilled.to_graphs(class_prior=not args.raw_frequency)
    result = train_gnn(
        graphs,
        weights,
        splits.val,
        splits.test,
        distilled.feature_spec,
        distilled.num_classes,
        ModelConfig(model=args.model, hidden=args.hidden, num_layers=args.layers or distilled.depth),
        TrainConfig(
            epochs=args.epochs,
            samples_per_epoch=args.samples_per_epoch,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            progress=True,
        ),
    )
    if args.out:
        tmp = Path(args.out).with_name(Path(args.out).name + ".tmp")
        torch.save(result.model.state_dict(), tmp)
        os.replace(tmp, args.out)
    print(json.dumps({"model": args.model, "best_epoch": result.best_epoch, "val": result.val, "test": result.test}, indent=2))
    return 0
