"""``graphdistill predict``: classify nodes from a feature matrix with a saved MLP student (no graph)."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from distillcore.config_cli import add_config_arguments, add_config_file_arguments, config_from_args
from distillcore.serialization import load_arrays, load_state


@dataclasses.dataclass
class PredictConfig:
    """`graphdistill predict` options."""
    batch_size: int = 65536  # rows classified per forward pass
    # write predictions here (.npy: class ids; .csv: id,class,probabilities); default: print class ids
    out: Path | None = None

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")


def add_parser(subparsers, name: str, help: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help, description=help)
    parser.add_argument("--student", type=Path, required=True, help="student.pt written by `graphdistill vqgraph train`")
    parser.add_argument("--features", type=Path, required=True,
                        help="node features [N, F]: .npy, .pt (a tensor) or .csv (comma-separated, no header)")
    add_config_file_arguments(parser)
    add_config_arguments(parser, PredictConfig, group_title="predict config (PredictConfig)")
    parser.set_defaults(func=_predict)
    return parser


def read_features(path: Path) -> torch.Tensor:
    """Loads a [N, F] float32 feature matrix from .npy, .pt or .csv."""
    if not path.is_file():
        raise FileNotFoundError(f"no feature file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = load_arrays(path, what="feature file")
    elif suffix == ".pt":
        array = load_state(path, what="feature file")
    elif suffix == ".csv":
        array = np.loadtxt(path, delimiter=",", ndmin=2)
    else:
        raise ValueError(f"unsupported feature file {path}: use .npy, .pt or .csv")
    return torch.as_tensor(array).float()


def _predict(args) -> int:
    from graphdistill.vqgraph.student import MLPStudent

    cfg = config_from_args(PredictConfig, args)
    args.batch_size, args.out = cfg.batch_size, cfg.out
    student = MLPStudent.load(args.student)
    labels, probs = student.predict(read_features(args.features), batch_size=args.batch_size)
    if args.out is None:
        print("\n".join(map(str, labels.tolist())))
    elif args.out.suffix.lower() == ".npy":
        np.save(args.out, labels.numpy())
    else:
        table = np.column_stack([np.arange(len(labels)), labels.numpy(), probs.numpy()])
        header = "node,class," + ",".join(f"p{c}" for c in range(probs.size(1)))
        np.savetxt(args.out, table, delimiter=",", header=header, comments="",
                   fmt=["%d", "%d"] + ["%.6f"] * probs.size(1))
    if args.out is not None:
        print(f"classified {len(labels)} nodes -> {args.out}")
    return 0
