"""``graphdistill predict``: classify nodes from a feature matrix with a saved MLP student (no graph)."""
from __future__ import annotations

import argparse
import dataclasses
import warnings
from pathlib import Path

import numpy as np
import torch

from distillcore.config_cli import add_config_arguments, add_config_file_arguments, config_from_args
from distillcore.runs import check_output_is_not_input
from distillcore.serialization import atomic_write, load_arrays, load_state


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


EXPECTED_FEATURES = "expected a numeric 2-D array [N, F] (one row of features per node)"


def read_features(path: Path) -> torch.Tensor:
    """Loads a [N, F] float32 feature matrix from .npy, .pt or .csv.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: one line naming ``path`` when it is corrupt or does not hold a numeric (integer, float or
            bool) 2-D array: a dict, strings, complex numbers, a vector.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no feature file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = load_arrays(path, what="feature file")
    elif suffix == ".pt":
        array = load_state(path, what="feature file")
    elif suffix == ".csv":
        try:
            with warnings.catch_warnings():  # an empty file: the emptiness check below says so in one line
                warnings.filterwarnings("ignore", message="loadtxt: input contained no data")
                array = np.loadtxt(path, delimiter=",", ndmin=2)
        except ValueError as err:  # numpy names the row and column of the first bad cell
            raise ValueError(f"feature file {path} holds values that are not numbers ({err}): "
                             f"{EXPECTED_FEATURES}") from None
    else:
        raise ValueError(f"unsupported feature file {path}: use .npy, .pt or .csv")
    if isinstance(array, torch.Tensor):
        if array.is_complex():  # numpy has no bfloat16 or float8: read torch's dtypes in torch
            raise ValueError(f"feature file {path} holds {array.dtype} values: {EXPECTED_FEATURES}")
        array = array.detach().cpu().float().numpy()
    if not isinstance(array, np.ndarray):
        raise ValueError(f"feature file {path} holds a {type(array).__name__}: {EXPECTED_FEATURES}")
    # complex values would lose their imaginary part in the cast to float32 (torch only warns)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"feature file {path} holds {array.dtype} values: {EXPECTED_FEATURES}")
    if array.ndim != 2:
        raise ValueError(f"feature file {path} holds a {array.ndim}-D array of shape {list(array.shape)}: "
                         f"{EXPECTED_FEATURES}")
    if array.size == 0:
        raise ValueError(f"feature file {path} holds no values (shape {list(array.shape)}): {EXPECTED_FEATURES}")
    return torch.as_tensor(array).float()


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # np.save given a name not ending in ".npy" would add the suffix
        np.save(handle, array)


def _predict(args) -> int:
    from graphdistill.vqgraph.student import MLPStudent

    cfg = config_from_args(PredictConfig, args)
    args.batch_size, args.out = cfg.batch_size, cfg.out
    if args.out is not None:  # before any work: the output must not replace what this command reads
        check_output_is_not_input(args.out, args.student)
        check_output_is_not_input(args.out, args.features)
    student = MLPStudent.load(args.student)
    labels, probs = student.predict(read_features(args.features), batch_size=args.batch_size)
    if args.out is None:
        print("\n".join(map(str, labels.tolist())))
        return 0
    if args.out.suffix.lower() == ".npy":
        atomic_write(args.out, lambda tmp: _save_npy(tmp, labels.numpy()))
    else:
        table = np.column_stack([np.arange(len(labels)), labels.numpy(), probs.numpy()])
        header = "node,class," + ",".join(f"p{c}" for c in range(probs.size(1)))
        atomic_write(args.out, lambda tmp: np.savetxt(tmp, table, delimiter=",", header=header, comments="",
                                                      fmt=["%d", "%d"] + ["%.6f"] * probs.size(1)))
    print(f"classified {len(labels)} nodes -> {args.out}")
    return 0
