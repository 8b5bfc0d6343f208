"""`make demo`: runs each method's main job at demo size on the bundled scene and data sets.

Every method exposes ``demo(out_dir) -> dict`` in its own package; this script runs them in order,
writes their outputs under ``runs/demo/<method>/`` and prints one summary table.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from distillcore.serialization import write_json_atomic

# (name shown, module with demo(), output folder under --out)
METHODS = [
    ("distillcore (codebook collapse and restart)", "distillcore.demo", "distillcore"),
    ("VQGraph (GNN -> MLP)", "graphdistill.vqgraph.demo", "vqgraph"),
    ("Mirage (graph data set -> trees)", "graphdistill.mirage.demo", "mirage"),
    # train a field, then segment and edit it: the demo lives with the queries, which build on fields
    ("Feature 3DGS", "distill3d.query.demo", "feature3dgs"),
    ("PointDistiller", "distill3d.points.demo", "points"),
    ("Progressive radiance distillation", "distill3d.inverse.demo", "inverse"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    parser.add_argument("--only", nargs="*", default=None, help="run only methods whose module contains one of these words")
    args = parser.parse_args(argv)
    summary: dict[str, dict] = {}
    for title, module, folder in METHODS:
        if args.only and not any(word in module or word in folder for word in args.only):
            continue
        mod = importlib.import_module(module)
        out_dir = args.out / folder
        out_dir.mkdir(parents=True, exist_ok=True)
        print(f"\n=== {title} ===", flush=True)
        start = time.perf_counter()
        result = mod.demo(out_dir)
        result["seconds"] = round(time.perf_counter() - start, 1)
        summary[title] = result
    print("\n=== summary ===")
    for title, result in summary.items():
        print(f"{title}:")
        for key, value in result.items():
            shown = f"{value:.4g}" if isinstance(value, float) else value
            print(f"    {key:<40} {shown}")
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "summary.json", summary)
    print(f"\noutputs under {args.out}/, summary in {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
