"""Progressive radiance distillation (PRD): physically based materials and light distilled out of a
Gaussian radiance field, with a learned progress map that keeps the radiance field where the physical
model cannot explain the images.

Physics (one concept per module): ``brdf`` (GGX Cook-Torrance), ``brdf_lut`` (split-sum table),
``cubemap`` (learnable HDR cube-map light), ``sh_irradiance`` (diffuse), ``prefilter`` (specular),
``shading`` (deferred split-sum shading), ``normals``. Model and training: ``model``, ``config``,
``trainer``, ``pipeline``; use: ``relight`` (relighting, export), ``metrics``, ``cli``, ``demo``.
"""
from __future__ import annotations

import importlib

# public name -> defining module, imported on first use so `distill3d --help` stays fast (the relight and
# export functions live in the `relight` module: a package attribute of that name would be the module)
_EXPORTS = {
    "PRDConfig": "config", "StageConfig": "config", "ModelConfig": "config", "EnvironmentMap": "cubemap",
    "PRDModel": "model", "PRDRender": "model", "PRDTrainer": "trainer", "model_from_checkpoint": "trainer",
    "evaluate_inverse": "metrics", "train_prd": "pipeline",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'distill3d.inverse' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


__all__ = list(_EXPORTS)
