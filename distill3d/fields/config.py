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

from distillcore.checks import check_choice, check_range

BACKENDS = ("auto", "native", "torch", "gsplat")


@dataclass
class LossConfig:
    lambda_dssim: float = 0.2  # weight of D-SSIM in the RGB loss
    feature_weight: float = 1.0  # weight of the feature L1 term (0 trains plain 3DGS)
    feature_kind: Literal["l1", "mse", "cosine"] = "l1"
    feature_grad_to_geometry: bool = False  # Feature 3DGS: the feature loss moves only the features

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the first field outside its range (also after fields were set)."""
        check_range(self.lambda_dssim, "loss.lambda_dssim", 0, 1)
        check_range(self.feature_weight, "loss.feature_weight", 0)
        check_choice(self.feature_kind, "loss.feature_kind", ("l1", "mse", "cosine"))


@dataclass
class DecoderConfig:
    """Speed-up decoder: render ``low_dim`` channels, a 1x1 conv lifts them to the teacher's D."""
    enabled: bool = False
    low_dim: int = 16
    # pca: the 1x1 conv starts as the teacher's top-low_dim PCA basis (whitened) plus its mean, so the
    # rendered channels begin in the teacher's most discriminative directions; random: PyTorch's init
    init: Literal["pca", "random"] = "pca"

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        check_range(self.low_dim, "decoder.low_dim", 1, integer=True)
        check_choice(self.init, "decoder.init", ("pca", "random"))


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

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        for f in fields(self):  # 0 freezes a group; negative rates would climb the loss
            check_range(getattr(self, f.name), f"optim.{f.name}", 0)


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

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        for name in ("grow_grad2d", "grow_scale3d", "prune_scale3d"):
            check_range(getattr(self, name), f"densify.{name}", 0, low_open=True)
        check_range(self.prune_opa, "densify.prune_opa", 0, 1, high_open=True)
        check_range(self.refine_start_iter, "densify.refine_start_iter", 0, integer=True)
        check_range(self.refine_stop_iter, "densify.refine_stop_iter", 0, integer=True)
        check_range(self.refine_every, "densify.refine_every", 1, integer=True)
        check_range(self.reset_every, "densify.reset_every", 1, integer=True)


@dataclass
class InitConfig:
    """Initial Gaussians (``distill3d.data.initial_points`` + ``Gaussians.from_points``)."""
    method: Literal["auto", "sparse", "depth", "random"] = "auto"  # auto: sparse, else depth, else random
    num_points: int = 20_000  # for "depth" (subsampled) and "random"
    random_radius: float = 0.4  # half-side of the random cube, as a fraction of the camera distance
    init_opacity: float = 0.1
    init_scale: float = 1.0  # times the mean distance to the 3 nearest neighbours
    # sky sphere (distill3d.fields.background): distant Gaussians for photos that show the sky; 0: none
    sky_points: int = 0
    sky_radius: float = 10.0  # its radius, times the mean camera distance from the cameras' focus

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        check_choice(self.method, "init.method", ("auto", "sparse", "depth", "random"))
        check_range(self.sky_points, "init.sky_points", 0, integer=True)
        check_range(self.sky_radius, "init.sky_radius", 0, low_open=True)
        check_range(self.num_points, "init.num_points", 1, integer=True)
        check_range(self.random_radius, "init.random_radius", 0, low_open=True)
        check_range(self.init_opacity, "init.init_opacity", 0, 1, low_open=True, high_open=True)
        check_range(self.init_scale, "init.init_scale", 0, low_open=True)


@dataclass
class SceneDataConfig:
    """Which views of a scene folder train and which evaluate (``distill3d.data.splits``)."""
    test_every: int = 8  # COLMAP: every n-th image (sorted by name) is a test view (3DGS convention); 0: no test split
    images: str | None = None  # COLMAP image folder (images, images_4, ...); unset: images_<downsample> if present

    def __post_init__(self):
        check_range(self.test_every, "data.test_every", 0, integer=True)


@dataclass
class TrainConfig:
    teacher: str = "efficientnet-lite0"  # 2D teacher (see `distill3d teachers list`)
    steps: int = 7000  # training steps (one view per step)
    sh_degree: int = 3  # maximum spherical-harmonics degree (0..3)
    sh_degree_interval: int = 1000  # raise the SH degree every N steps
    backend: str = "auto"  # rasterizer backend: auto | native | torch | gsplat
    eval_every: int = 1000  # evaluate on the test split every N steps (0: never)
    checkpoint_every: int = 1000  # checkpoint every N steps (0: only at the end)
    seed: int = 0  # random seed (initial points, view order, densification)
    # bitwise-repeatable runs and resumes: torch's deterministic algorithms while training, which also
    # switch the native CUDA backward to ordered sums (slower on GPUs; False: atomics). The native CPU
    # backward always sums in order (no measurable cost), so CPU runs repeat either way.
    deterministic: bool = True
    device: str = "cpu"  # torch device (cpu, cuda)
    # colour under transparent pixels in training and evaluation: scene (the images' own), white, black,
    # R,G,B, random (per step; needs alpha) or learned (see distill3d.fields.background)
    background: str = "scene"
    loss: LossConfig = field(default_factory=LossConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    init: InitConfig = field(default_factory=InitConfig)
    data: SceneDataConfig = field(default_factory=SceneDataConfig)  # train / test views (PRD: radiance.data)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Checks every field (and the nested configs); the trainer calls it again at start, so values
        set after construction (``cfg.loss.feature_weight = -1``) are caught too."""
        check_range(self.steps, "steps", 1, integer=True)
        check_range(self.sh_degree, "sh_degree", 0, 3, integer=True)
        check_range(self.sh_degree_interval, "sh_degree_interval", 1, integer=True)
        check_choice(self.backend, "backend", BACKENDS)
        check_range(self.eval_every, "eval_every", 0, integer=True)
        check_range(self.checkpoint_every, "checkpoint_every", 0, integer=True)
        check_range(self.seed, "seed", 0, integer=True)
        if not isinstance(self.deterministic, bool):
            raise ValueError(f"deterministic must be true or false, got {self.deterministic!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a torch device name such as 'cpu' or 'cuda', got {self.device!r}")
        from .background import parse_background

        parse_background(self.background)
        for sub in (self.loss, self.decoder, self.optim, self.densify, self.init):
            sub.validate()

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


def short_schedule(steps: int, num_points: int) -> dict:
    """A partial :class:`TrainConfig` (config-file layout) for a run of ``steps`` steps with every
    step-based schedule scaled to it, as ``benchmarks/feature3dgs.py`` trains: SH degree raised every
    ``steps // 4``, densification from ``steps // 6`` to ``0.8 steps`` every ``steps // 12``, no opacity
    reset, no periodic evaluation or checkpoints. (``--steps`` alone keeps the 7000-step schedule.)"""
    return {"steps": steps, "sh_degree_interval": max(1, steps // 4), "eval_every": 0, "checkpoint_every": 0,
            "init": {"num_points": num_points},
            "densify": {"refine_start_iter": max(1, steps // 6), "refine_stop_iter": int(steps * 0.8),
                        "refine_every": max(1, steps // 12), "reset_every": 10 * steps}}


# ``distill3d train --preset NAME``: quick = `benchmarks/feature3dgs.py --quick`, benchmark = the Feature 3DGS
# table of docs/feature3dgs.md (that script's default; it also trains at ``--downsample 2``), full = the 3DGS
# 7000-step schedule (the defaults).
TRAIN_PRESETS: dict[str, dict] = {
    "quick": short_schedule(150, 5000),
    "benchmark": short_schedule(1000, 5000),
    "full": {},
}
