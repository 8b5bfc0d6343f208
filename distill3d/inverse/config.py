"""Hyper-parameters of progressive radiance distillation (PRD), one dataclass per concern.

Training = radiance pre-training (plain 3DGS with the Feature 3DGS trainer, ``radiance``) followed by
the physical ``stages``; each stage names the parameter groups it trains and its loss weights:

    L = w_img L_img(I, I_gt) + w_prog mean_fg(1 - alpha_p) + w_light L_light + w_mask |A - A_gt|_1

``I = alpha_p I_phys + (1 - alpha_p) I_rad`` (``alpha_p``: the splatted progress map), ``L_img`` the
3DGS photometric loss, ``mean_fg`` a mean over object pixels (needs the scene's masks), ``L_light`` the
neutral-light prior of nvdiffrec (mean |L_c - mean_c L| over texels, against albedo/light colour
ambiguity), ``A`` the rendered coverage. Groups: ``geometry`` (means, quats, scales, opacities),
``radiance`` (SH), ``albedo``, ``roughness``, ``metallic``, ``progress``, ``normal_residual``, ``light``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from distillcore.checks import check_choice, check_range

from distill3d.fields.config import DensifyConfig, TrainConfig, _from_dict

from .brdf_lut import BRDFLutConfig
from .prefilter import PrefilterConfig
from .visibility import VisibilityConfig

GROUPS = ("geometry", "radiance", "albedo", "roughness", "metallic", "progress", "normal_residual", "light")


@dataclass
class StageConfig:
    name: str
    steps: int
    groups: tuple[str, ...]
    image_weight: float = 1.0
    progress_weight: float = 0.0
    light_weight: float = 0.0
    mask_weight: float = 0.0
    lr_scale: float = 1.0  # multiplies every group's learning rate (joint refinement fine-tunes)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the stage and the first field outside its range."""
        unknown = set(self.groups) - set(GROUPS)
        if unknown:
            raise ValueError(f"stage {self.name!r}: unknown parameter groups {sorted(unknown)} (choose from {GROUPS})")
        check_range(self.steps, f"stage {self.name!r} steps", 0, integer=True)
        for weight in ("image_weight", "progress_weight", "light_weight", "mask_weight"):
            check_range(getattr(self, weight), f"stage {self.name!r} {weight}", 0)
        check_range(self.lr_scale, f"stage {self.name!r} lr_scale", 0, low_open=True)

    @property
    def needs_masks(self) -> bool:
        return self.progress_weight > 0 or self.mask_weight > 0


# Weight of mean_fg(1 - alpha_p). On the default scene at full size, 0.05 drove the progress map to 0.98
# on objects and the novel views 0.57 dB below plain 3DGS; 0.01 keeps it at 0.89 and the gap at 0.32 dB,
# with relit PSNR unchanged (22.93 vs 22.85 dB; benchmarks/prd.py).
PROGRESS_WEIGHT = 0.01


def default_stages() -> list[StageConfig]:
    """The paper's schedule after radiance pre-training: specular, diffuse, joint refinement."""
    return [
        StageConfig("specular", 300, ("light", "roughness", "metallic", "progress")),
        StageConfig("diffuse", 400, ("albedo", "roughness", "metallic", "light", "progress"),
                    progress_weight=PROGRESS_WEIGHT, light_weight=0.005, mask_weight=0.0),
        StageConfig("joint", 300, GROUPS, progress_weight=PROGRESS_WEIGHT, light_weight=0.005, mask_weight=0.1, lr_scale=0.3),
    ]


@dataclass
class MaterialInitConfig:
    albedo: float | None = None  # None: the radiance field's linear base colour; a value: that grey everywhere
    roughness: float = 0.5
    metallic: float = 0.05
    progress: float = 0.5  # below 1: the radiance field keeps explaining what the physics cannot yet
    light: float = 0.8  # initial environment radiance (uniform)
    # with visibility and albedo None: albedo_0 = clamp(c / max(S_vis / S_open, s_min), 0, 1) when the visibility
    # is baked (PRDModel.deshadow_albedo; S: diffuse shading of the initial light with / without occluders), so
    # the shadows in the photos do not start in the albedo. On at quick size, 3 seeds: relit aligned +0.13 dB
    # (interreflect) and +0.11 dB (default), albedo in cast shadows 0.43 -> 0.45 and 0.83 -> 0.87 (docs/prd.md)
    albedo_deshadow: bool = True
    albedo_deshadow_floor: float = 0.2  # s_min: the least shadowing divided out (at most 1 / s_min brighter)
    # the side of each Gaussian's shortest axis the shadowing is measured on (PRDModel.deshadow_albedo):
    # "cameras" (the side the training cameras that see it are on; needs bake_visibility(..., cameras=...))
    # or "light" (the side receiving more light through the visibility: the underside for 47% of the
    # interreflect table's Gaussians, which then keep their shadow). "cameras" with floor 0.3, quick size,
    # 3 seeds: albedo in cast shadows 0.46 -> 0.60 / 0.90 -> 0.92 / 0.81 -> 0.84 (interreflect / default /
    # glossy), relit aligned +1.11 / -0.13 / -0.14 dB, albedo PSNR +1.80 / -0.59 / -0.55 dB (docs/prd.md)
    albedo_deshadow_side: Literal["cameras", "light"] = "light"

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        if self.albedo is not None:
            check_range(self.albedo, "model.init.albedo", 0, 1)
        if not isinstance(self.albedo_deshadow, bool):
            raise ValueError(f"model.init.albedo_deshadow must be true or false, got {self.albedo_deshadow!r}")
        check_range(self.albedo_deshadow_floor, "model.init.albedo_deshadow_floor", 0, 1, low_open=True)
        check_choice(self.albedo_deshadow_side, "model.init.albedo_deshadow_side", ("cameras", "light"))
        check_range(self.roughness, "model.init.roughness", 0, 1)
        check_range(self.metallic, "model.init.metallic", 0, 1)
        check_range(self.progress, "model.init.progress", 0, 1)
        check_range(self.light, "model.init.light", 0)


@dataclass
class ModelConfig:
    env_resolution: int = 16  # cube-map face size of the learned light
    min_roughness: float = 0.04  # roughness = min + (1 - min) sigmoid(raw): no degenerate mirror lobes
    normal_residual: bool = False  # learn a per-Gaussian residual added to the shortest-axis normal
    progress: Literal["learned", "one"] = "learned"  # "one": alpha_p = 1, no radiance fallback (GS-IR style)
    material_grad_to_geometry: bool = True  # may shading losses move the Gaussians (through compositing)
    # environment visibility baked by tracing the Gaussians (shadows in diffuse and specular shading)
    visibility: VisibilityConfig = field(default_factory=VisibilityConfig)
    prefilter: PrefilterConfig = field(default_factory=PrefilterConfig)
    brdf_lut: BRDFLutConfig = field(default_factory=BRDFLutConfig)
    init: MaterialInitConfig = field(default_factory=MaterialInitConfig)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        check_range(self.env_resolution, "model.env_resolution", 1, integer=True)
        check_range(self.min_roughness, "model.min_roughness", 0, 1, high_open=True)
        check_choice(self.progress, "model.progress", ("learned", "one"))
        self.init.validate()
        self.visibility.validate()


@dataclass
class PRDOptimConfig:
    means_lr: float = 1.6e-6  # times the scene scale (the pre-training's final rate)
    quats_lr: float = 1e-3
    scales_lr: float = 5e-3
    opacities_lr: float = 5e-3
    sh0_lr: float = 2.5e-3
    shN_lr: float = 2.5e-3 / 20
    albedo_lr: float = 2e-2
    roughness_lr: float = 2e-2
    metallic_lr: float = 2e-2
    progress_lr: float = 2e-2
    normal_residual_lr: float = 1e-3
    light_lr: float = 3e-2

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        for name in self.__dataclass_fields__:  # 0 freezes a group; negative rates would climb the loss
            check_range(getattr(self, name), f"optim.{name}", 0)


@dataclass
class MaskConfig:
    """Object masks for the progress and mask terms when the scene has none (photos without alpha).

    ``opacity``: the pre-trained radiance field's accumulated opacity on each training view, thresholded;
    ``off``: the stages' progress and mask weights set to 0; ``auto``: ``opacity`` unless the field
    covers less than ``min_foreground`` of the training pixels (nothing to call an object), then ``off``.
    Scenes with alpha always use their own masks.
    """
    source: Literal["auto", "opacity", "off"] = "auto"  # where masks come from when the scene has no alpha
    threshold: float = 0.5  # accumulated opacity above which a pixel counts as object
    min_foreground: float = 0.01  # auto: least mean object fraction of the training views for "opacity"


def default_radiance() -> TrainConfig:
    return TrainConfig(teacher="none", steps=3000, sh_degree=3, sh_degree_interval=500,
                       densify=DensifyConfig(refine_start_iter=300, refine_stop_iter=2000, reset_every=1000))


@dataclass
class PRDConfig:
    radiance: TrainConfig = field(default_factory=default_radiance)
    stages: list[StageConfig] = field(default_factory=default_stages)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: PRDOptimConfig = field(default_factory=PRDOptimConfig)
    masks: MaskConfig = field(default_factory=MaskConfig)
    lambda_dssim: float = 0.2
    checkpoint_every: int = 200  # physical-stage steps between checkpoints (0: at stage ends only)
    seed: int = 0
    # physical stages under torch's deterministic algorithms (bitwise-repeatable, as radiance.deterministic
    # for the pre-training; see distill3d.fields.config.TrainConfig)
    deterministic: bool = True

    def __post_init__(self):
        self.validate()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PRDConfig":
        data = dict(data)
        stages = data.pop("stages", None)
        config = _from_dict(cls, data)
        if stages is not None:
            config.stages = [StageConfig(**{**s, "groups": tuple(s["groups"])}) for s in stages]
        return config

    def validate(self) -> None:
        """Checks every field and nested config (the trainer calls it, so values set after construction
        are caught too)."""
        if not self.stages:
            raise ValueError("PRDConfig.stages is empty: give at least one physical stage")
        for stage in self.stages:
            stage.validate()
        self.radiance.validate()
        self.model.validate()
        self.optim.validate()
        check_range(self.lambda_dssim, "lambda_dssim", 0, 1)
        check_range(self.checkpoint_every, "checkpoint_every", 0, integer=True)
        check_range(self.seed, "seed", 0, integer=True)
        if not isinstance(self.deterministic, bool):
            raise ValueError(f"deterministic must be true or false, got {self.deterministic!r}")
        if self.masks.source not in ("auto", "opacity", "off"):
            raise ValueError(f"masks.source must be 'auto', 'opacity' or 'off', got {self.masks.source!r}")
        if not 0.0 < self.masks.threshold < 1.0:
            raise ValueError(f"masks.threshold must lie in (0, 1), got {self.masks.threshold}")


# ``distill3d inverse train --preset NAME`` (partial configs in the layout of a run's config.json; the
# top-level ``downsample`` is the command's): quick = `benchmarks/prd.py --quick` (64 x 64, 300 radiance
# steps with the schedule brought forward, 3 x 50 physical steps), benchmark = that script's full run
# (the README's PRD table), full = the defaults.
PRD_PRESETS: dict[str, dict] = {
    "quick": {"downsample": 2,
              "radiance": {"steps": 300, "eval_every": 0, "sh_degree_interval": 200, "init": {"num_points": 3000},
                           "densify": {"refine_start_iter": 100, "refine_every": 100, "refine_stop_iter": 200}},
              "stages": [{"steps": 50}, {"steps": 50}, {"steps": 50}]},
    "benchmark": {"downsample": 1, "radiance": {"steps": 3000, "eval_every": 0, "init": {"num_points": 20_000}}},
    "full": {},
}
