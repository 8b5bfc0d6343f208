"""Codebook collapse and its cures: vector-quantizer settings on sklearn's 8x8 digits (1797 x 64).

Prints codes used, perplexity and relative distortion per setting of ``distillcore.quantize`` next to
scikit-learn's k-means (the distortion floor a codebook of that size can reach), and writes
``benchmarks/results/distillcore_codebook.json``.

    python benchmarks/distillcore_codebook.py            # 20 epochs
    python benchmarks/distillcore_codebook.py --quick    # 5 epochs
"""
from __future__ import annotations

import argparse
import math
import pathlib
import time
from dataclasses import asdict

from sklearn.cluster import KMeans

from distillcore.demo import CodebookStudyConfig, load_digit_rows, run_codebook_study
from distillcore.serialization import write_json_atomic

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "distillcore_codebook.json"
KMEANS_RESTARTS = 4


def sklearn_kmeans_reference(codebook_size: int, seed: int) -> dict:
    rows = load_digit_rows().numpy()
    km = KMeans(n_clusters=codebook_size, n_init=KMEANS_RESTARTS, random_state=seed).fit(rows)
    counts = [int((km.labels_ == k).sum()) for k in range(codebook_size)]
    total = sum(counts)
    entropy = -sum(c / total * math.log(c / total) for c in counts if c)
    spread = float(((rows - rows.mean(0)) ** 2).sum())
    return {
        "codes_used": sum(c > 0 for c in counts),
        "perplexity": float(math.exp(entropy)),
        "relative_distortion": float(km.inertia_) / spread,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 training epochs instead of 20")
    parser.add_argument("--codebook-size", type=int, default=64, help="number of codes K (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS, help="where to write the JSON results")
    args = parser.parse_args(argv)

    study = CodebookStudyConfig(codebook_size=args.codebook_size, epochs=5 if args.quick else 20, seed=args.seed)
    start = time.perf_counter()
    results = run_codebook_study(study)
    results["scikit-learn KMeans (reference)"] = sklearn_kmeans_reference(study.codebook_size, study.seed)
    seconds = time.perf_counter() - start

    print(f"Vector quantizer on digits (N=1797, d=64), K={study.codebook_size}, {study.epochs} epochs")
    print(f"{'setting':34s} {'codes used':>10s} {'perplexity':>10s} {'rel. distortion':>16s}")
    for name, r in results.items():
        print(f"{name:34s} {r['codes_used']:>10d} {r['perplexity']:>10.1f} {r['relative_distortion']:>16.3f}")
    print(f"({seconds:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, {"study": asdict(study), "results": results, "seconds": seconds})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
