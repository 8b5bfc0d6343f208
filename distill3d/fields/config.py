"""Hyper-parameters of Feature 3DGS training, one dataclass per concern.

Defaults follow 3DGS / gsplat's simple trainer and Feature 3DGS (Zhou et al., CVPR 2024):
``L = (1 - lambda) L1 + lambda D-SSIM + w_f |F_render - F_teacher|_1`` with ``lambda = 0.2``,
``w_f = 1``; position learning rate decaying exponentially from ``1.6e-4`` to ``1.6e-6`` times the
scene scale; SH degree raised by one every ``sh_degree_interval`` steps; gsplat ``DefaultStrategy``
densification.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Literal


@dataclass
class LossConfig:
    lambda_dssim: float = 0.2  # weight of D-SSIM in the RGB loss
    feature_weight: float = 1.0  # weight of the feature L1 term (0 trains plain 3DGS)
    feature_kind: Literal["l1", "mse", "cosine"] = "l1"
    feature_grad_to_geometry: bool = False  # Feature 3DGS: the feature loss moves only the features


@dataclass
class DecoderConfig:
    """Speed-up decoder: render ``low_dim`` channels, a 1x1 conv lifts them to the teacher's D."""
    enabled: bool = False
    low_dim: int = 16


@dataclass
class OptimConfig:
    means_lr_init: float = 1.6e-4  # times the scene scale
    means_lr_final: float = 1.6e-6
    scales_lr: float = 5e-3
    quats_lr: float = 1e-3
    opacities_lr: float = 5e-2
    sh0_lr: float = 2.5e-3
    shN_lr: float = 2.5e-3 / 20
    features_lr: float = 1e-3
    decoder_lr: float = 1e-3


@dataclass
class DensifyConfig:
    """gsplat ``DefaultStrategy`` settings (steps are training steps)."""
    enabled: bool = True
    grow_grad2d: float = 2e-4
    grow_scale3d: float = 0.01
    prune_opa: float = 0.005
    prune_scale3d: float = 0.1
    refine_start_iter: int = 500
    refine_stop_iter: int = 15_000
    refine_every: int = 100
    reset_every: int = 3000
    absgrad: bool = False


@dataclass
class InitConfig:
    """Initial Gaussians (``distill3d.data.initial_points`` + ``Gaussians.from_points``)."""
    method: Literal["auto", "sparse", "depth", "random"] = "auto"  # auto: sparse, else depth, else random
    num_points: int = 20_000  # for "depth" (subsampled) and "random"
    random_radius: float = 0.4  # half-side of the random cube, as a fraction of the camera distance
    init_opacity: float = 0.1
    init_scale: float = 1.0  # times the mean distance to the 3 nearest neighbours


@dataclass
class TrainConfig:
    teacher: str = "efficientnet-lite0"
    steps: int = 7000
    sh_degree: int = 3
    sh_degree_interval: int = 1000
    backend: str = "auto"  # rasterizer backend: auto | native | torch | gsplat
    eval_every: int = 1000  # 0: no periodic evaluation
    checkpoint_every: int = 1000  # 0: only the final checkpoint
    seed: int = 0
    device: str = "cpu"
    loss: LossConfig = field(default_factory=LossConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    init: InitConfig = field(default_factory=InitConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return _from_dict(cls, data)


def _from_dict(cls, data: dict):
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        default = known[name].default_factory() if callable(known[name].default_factory) else None
        kwargs[name] = _from_dict(type(default), value) if is_dataclass(default) and isinstance(value, dict) else value
    return cls(**kwargs)
