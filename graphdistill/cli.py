"""`graphdistill` command line: VQGraph (GNN -> MLP) and Mirage (data-set distillation)."""
from __future__ import annotations

import sys

from distillcore.cli import build_parser, console, run
from distillcore.config_cli import preload_environment

GROUPS = [
    ("vqgraph", "graphdistill.vqgraph.cli", "train a GNN teacher + codebook and distil it into an MLP"),
    ("predict", "graphdistill.vqgraph.predict_cli", "classify nodes from features with a saved MLP student"),
    ("mirage", "graphdistill.mirage.cli", "distil a graph-classification data set into computation trees"),
]


def main(argv: list[str] | None = None) -> int:
    preload_environment()  # before any command imports torch (see distillcore.config_cli)
    parser = build_parser("graphdistill", GROUPS, "Graph distillation: GNN-to-MLP (VQGraph) and data sets (Mirage).")
    return run(parser, argv)


def console_main() -> int:
    """The ``graphdistill`` console script."""
    return console("graphdistill", main)


if __name__ == "__main__":
    sys.exit(console_main())
