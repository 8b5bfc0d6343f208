"""distillcore demo: codebook collapse and its cures on real data (sklearn's 8x8 digits).

A vector quantizer is fitted directly to the 1797 digit images (64-d, pixel values / 16) under
several settings; after training, every image is quantized once and we measure the codes used,
the perplexity of the code histogram, and the relative distortion
:math:`\\sum_n \\lVert x_n - q_n \\rVert^2 / \\sum_n \\lVert x_n - \\bar{x} \\rVert^2` (in the
quantizer's space: unit-normalised rows for the cosine codebook). ``benchmarks/distillcore_codebook.py``
runs the same study at full size.
"""
from __future__ import annotations

import pathlib
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from distillcore.quantize import QuantizerConfig, VectorQuantizer
from distillcore.serialization import write_json_atomic

# Digits pixels run 0..16.
DIGITS_PIXEL_MAX = 16.0


@dataclass
class CodebookStudyConfig:
    codebook_size: int = 64
    epochs: int = 20
    batch_size: int = 128
    grad_lr: float = 1e-2  # Adam step on the codebook for update="grad"
    restart_threshold: float = 1.0  # dead_code_threshold of the "restart" settings
    seed: int = 0


def load_digit_rows() -> torch.Tensor:  # [1797, 64]
    return torch.tensor(load_digits().data, dtype=torch.float32) / DIGITS_PIXEL_MAX


def study_settings(study: CodebookStudyConfig) -> dict[str, QuantizerConfig]:
    base = QuantizerConfig(codebook_size=study.codebook_size, dim=64)
    restart = study.restart_threshold
    return {
        "EMA, random init": base,
        "EMA + dead-code restart": replace(base, dead_code_threshold=restart),
        "EMA + k-means init": replace(base, kmeans_init=True),
        "EMA + k-means init + restart": replace(base, kmeans_init=True, dead_code_threshold=restart),
        "gradient, random init": replace(base, update="grad"),
        "gradient + dead-code restart": replace(base, update="grad", dead_code_threshold=restart),
        "cosine EMA, random init": replace(base, similarity="cosine"),
        "cosine EMA + restart": replace(base, similarity="cosine", dead_code_threshold=restart),
    }


def fit_and_measure(config: QuantizerConfig, rows: torch.Tensor, study: CodebookStudyConfig) -> dict:
    """Trains a quantizer on ``rows [N, dim]`` and measures codes used, perplexity, distortion."""
    torch.manual_seed(study.seed)
    vq = VectorQuantizer(config)
    optimizer = torch.optim.Adam(vq.parameters(), lr=study.grad_lr) if config.update == "grad" else None
    for _ in range(study.epochs):
        for batch in torch.randperm(len(rows)).split(study.batch_size):
            out = vq(rows[batch])
            if optimizer is not None:
                optimizer.zero_grad()
                out.commit_loss.backward()
                optimizer.step()
    vq.eval()
    vq.reset_usage()
    with torch.no_grad():
        quantized = vq(rows).quantized
    space = F.normalize(rows, dim=-1) if config.similarity == "cosine" else rows
    distortion = (space - quantized).pow(2).sum() / (space - space.mean(0)).pow(2).sum()
    return {**vq.usage(), "relative_distortion": float(distortion)}


def run_codebook_study(study: CodebookStudyConfig) -> dict[str, dict]:
    rows = load_digit_rows()
    return {name: fit_and_measure(config, rows, study) for name, config in study_settings(study).items()}


def demo(out_dir: pathlib.Path) -> dict:
    """Runs the codebook study at demo size; writes ``codebook_study.json``, returns headline numbers."""
    study = CodebookStudyConfig(epochs=5)
    results = run_codebook_study(study)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "codebook_study.json", {"study": asdict(study), "results": results})
    return {
        "perplexity_no_restart": round(results["EMA, random init"]["perplexity"], 2),
        "perplexity_restart": round(results["EMA + dead-code restart"]["perplexity"], 2),
        "perplexity_kmeans_restart": round(results["EMA + k-means init + restart"]["perplexity"], 2),
        "codes_used_no_restart": results["EMA, random init"]["codes_used"],
        "codes_used_restart": results["EMA + dead-code restart"]["codes_used"],
    }


__all__ = ["CodebookStudyConfig", "run_codebook_study", "fit_and_measure", "demo"]
