"""The viewer's render modes and which ones a loaded model offers.

A mode needs what it shows: ``features`` (a field with trained features), ``decoder`` (a field with
the speed-up decoder, whose output is the teacher-space map), ``prd`` (a PRD run's materials and light).
A mode a model cannot show stays listed with the reason, so the panel can say why it is off.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    name: str
    label: str
    needs: str | None = None  # None, "features", "decoder" or "prd"


MODES = (
    Mode("rgb", "RGB"),
    Mode("depth", "depth"),
    Mode("feature_pca", "feature PCA", "features"),
    Mode("decoder_pca", "decoder output (PCA)", "decoder"),
    Mode("prd_image", "PRD image (blended)", "prd"),
    Mode("physical", "PRD physical", "prd"),
    Mode("progress", "PRD progress", "prd"),
    Mode("albedo", "PRD albedo", "prd"),
    Mode("roughness", "PRD roughness", "prd"),
    Mode("metallic", "PRD metallic", "prd"),
    Mode("normal", "PRD normal", "prd"),
)
MODE_NAMES = tuple(m.name for m in MODES)
_WHY_OFF = {
    "features": "needs a field with trained features (this model has none)",
    "decoder": "needs a field trained with the speed-up decoder",
    "prd": "needs a PRD run (distill3d inverse train)",
}


def mode_availability(has_features: bool, has_decoder: bool, has_prd: bool) -> dict[str, str | None]:
    """``mode name -> None`` when available, else the reason it is off."""
    have = {None: True, "features": has_features, "decoder": has_decoder, "prd": has_prd}
    return {m.name: None if have[m.needs] else _WHY_OFF[m.needs] for m in MODES}


__all__ = ["MODES", "MODE_NAMES", "Mode", "mode_availability"]
