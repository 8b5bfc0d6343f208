"""Segment Anything's image encoder as a teacher: ``[256, h, w]`` on SAM's 1/16 grid.

SAM resizes the image so its long side is ``img_size`` (1024 for the released models), normalises
with ImageNet statistics on the 0..255 scale, pads bottom/right to a square and encodes it with a
ViT; the image's part of the embedding is ``h = ceil(round(H * img_size / max(H, W)) / 16)`` cells.
The weights are the user's SAM checkpoint (a full ``Sam`` state dict, or an encoder-only one);
``SamEncoderConfig`` builds any encoder size, which is how tests use a small random-init one.
"""
from __future__ import annotations

import importlib.util
import math
import pathlib
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distillcore.serialization import load_state

from .base import Teacher, freeze
from .registry import register_teacher

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SamEncoderConfig:
    """Hyper-parameters of SAM's ``ImageEncoderViT`` (defaults: ViT-B)."""
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    img_size: int = 1024
    patch_size: int = 16
    out_chans: int = 256
    window_size: int = 14


SAM_PRESETS: dict[str, SamEncoderConfig] = {
    "vit_b": SamEncoderConfig(),
    "vit_l": SamEncoderConfig(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": SamEncoderConfig(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
}


def load_encoder_state(checkpoint: str | pathlib.Path) -> dict[str, Tensor]:
    """The image-encoder weights of a SAM checkpoint (full ``Sam`` or encoder-only state dict)."""
    state = load_state(checkpoint, what="SAM checkpoint")
    if not isinstance(state, dict):
        raise ValueError(f"SAM checkpoint {checkpoint} is not a state dict")
    prefix = "image_encoder."
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def sam_modeling():
    """``segment_anything.modeling`` (torch only), importable without torchvision.

    ``import segment_anything`` runs the package's ``__init__``, which imports torchvision for its
    predictor; the ``modeling`` sub-package needs torch alone, so when torchvision is missing it is
    loaded from its files under its own name.
    """
    try:
        from segment_anything import modeling
        return modeling
    except ModuleNotFoundError as err:
        if err.name != "torchvision":
            raise
    name = "segment_anything_modeling"
    if name in sys.modules:
        return sys.modules[name]
    package = importlib.util.find_spec("segment_anything")
    if package is None or not package.submodule_search_locations:
        raise ModuleNotFoundError("the SAM teacher needs segment-anything: pip install segment-anything")
    directory = pathlib.Path(next(iter(package.submodule_search_locations))) / "modeling"
    spec = importlib.util.spec_from_file_location(
        name, directory / "__init__.py", submodule_search_locations=[str(directory)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class SamTeacher(Teacher):
    def __init__(self, config: SamEncoderConfig, checkpoint: str | pathlib.Path | None = None):
        super().__init__()
        self.config = config
        self.encoder = sam_modeling().ImageEncoderViT(
            depth=config.depth, embed_dim=config.embed_dim, img_size=config.img_size, mlp_ratio=4,
            norm_layer=lambda dim: torch.nn.LayerNorm(dim, eps=1e-6), num_heads=config.num_heads,
            patch_size=config.patch_size, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=config.global_attn_indexes, window_size=config.window_size,
            out_chans=config.out_chans)
        if checkpoint is not None:
            self.encoder.load_state_dict(load_encoder_state(checkpoint))
        freeze(self.encoder)
        self.dim = config.out_chans
        self.output_stride = config.patch_size
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(3, 1, 1) / 255.0, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(3, 1, 1) / 255.0, persistent=False)

    def fingerprint(self) -> str:
        c = self.config
        return f"{super().fingerprint()}-e{c.embed_dim}x{c.depth}-i{c.img_size}"

    def resized_shape(self, height: int, width: int) -> tuple[int, int]:
        """SAM's ``ResizeLongestSide`` target shape."""
        scale = self.config.img_size / max(height, width)
        return int(height * scale + 0.5), int(width * scale + 0.5)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        rh, rw = self.resized_shape(height, width)
        return math.ceil(rh / self.output_stride), math.ceil(rw / self.output_stride)

    def extract(self, image: Tensor) -> Tensor:
        rh, rw = self.resized_shape(*image.shape[1:])
        x = F.interpolate(image[None], (rh, rw), mode="bilinear", align_corners=False, antialias=True)[0]
        x = (x - self.pixel_mean) / self.pixel_std
        side = self.config.img_size
        x = F.pad(x, (0, side - rw, 0, side - rh))  # zero padding after normalisation, as SAM does
        features = self.encoder(x[None])[0]
        h, w = self.grid(*image.shape[1:])
        return features[:, :h, :w]


@register_teacher("sam", "Segment Anything image encoder, 256-d at 1/16 of a 1024 image (your checkpoint)",
                  needs_checkpoint=True)
def build_sam(checkpoint: str | pathlib.Path | None = None, model_type: str = "vit_b",
              config: SamEncoderConfig | None = None) -> SamTeacher:
    if config is None:
        if model_type not in SAM_PRESETS:
            raise ValueError(f"model_type must be one of {list(SAM_PRESETS)}, got {model_type!r}")
        config = SAM_PRESETS[model_type]
    return SamTeacher(config, checkpoint)
