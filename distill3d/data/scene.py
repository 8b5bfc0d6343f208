"""``Scene``: the posed images (and optional ground-truth buffers) every distill3d trainer reads.

Cameras follow the rasterizer's convention (see ``cameras``): ``viewmats`` world -> camera in OpenCV
axes (x right, y down, z forward), ``Ks`` pinhole intrinsics with pixel centres at +0.5.
A ``Scene`` holds ONE split (train or test) of a data set; readers load each split separately.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from distillcore.checks import check_same_size, check_tensor
from distill3d.data.cameras import camera_centers

# per-view buffers averaged over each factor x factor block when a scene is downsampled (normals are
# re-normalised); masks (object ids) and depths (unprojected into points: an averaged depth at a silhouette
# would float between object and background) are sampled at block centres instead
AREA_BUFFERS = ("images", "alphas", "normals", "albedos", "roughness", "metallic", "relit_images")
CENTRE_BUFFERS = ("masks", "depths")

# optional per-view buffers: name -> channel count (None: no channel axis)
PER_VIEW_BUFFERS: dict[str, int | None] = {
    "alphas": 1, "depths": 1, "normals": 3, "albedos": 3, "roughness": 1, "metallic": 1, "masks": None, "relit_images": 3,
}


@dataclass
class Scene:
    """One split of a multi-view scene.

    images:        [V, H, W, 3] float32 in [0, 1], sRGB-encoded (as photos are), over ``background``
    Ks:            [V, 3, 3] float32 pinhole intrinsics
    viewmats:      [V, 4, 4] float32 world -> camera (OpenCV)
    names:         V image names
    split:         "train", "test", ...
    background:    [3] the colour transparent pixels were composited over
    alphas:        [V, H, W, 1] object coverage (renders with a hidden background; None for photos)
    depths:        [V, H, W, 1] z-depth along the optical axis, 0 where there is no surface
    normals:       [V, H, W, 3] world-space unit normals facing the camera, 0 where no surface
    albedos:       [V, H, W, 3] linear base colour
    roughness:     [V, H, W, 1]; metallic: [V, H, W, 1]
    masks:         [V, H, W] int64 object ids (0 = background), names in ``object_names``
    relit_images:  [V, H, W, 3] the same views under ``relight_environment`` (sRGB, over background)
    points:        [P, 3] sparse 3D points (COLMAP), point_colors [P, 3] in [0, 1]
    environment / relight_environment: [He, We, 3] linear HDR equirectangular maps (``environment.py``)
    """

    images: Tensor
    Ks: Tensor
    viewmats: Tensor
    names: list[str]
    split: str = "train"
    background: Tensor = field(default_factory=lambda: torch.zeros(3))
    alphas: Tensor | None = None
    depths: Tensor | None = None
    normals: Tensor | None = None
    albedos: Tensor | None = None
    roughness: Tensor | None = None
    metallic: Tensor | None = None
    masks: Tensor | None = None
    object_names: list[str] | None = None
    relit_images: Tensor | None = None
    points: Tensor | None = None
    point_colors: Tensor | None = None
    environment: Tensor | None = None
    relight_environment: Tensor | None = None
    root: Path | None = None

    def __post_init__(self) -> None:
        check_tensor(self.images, "images", shape=[None, None, None, 3], floating=True)
        num_views, height, width, _ = self.images.shape
        check_tensor(self.Ks, "Ks", shape=[num_views, 3, 3], floating=True)
        check_tensor(self.viewmats, "viewmats", shape=[num_views, 4, 4], floating=True)
        check_same_size({"images.shape[0]": num_views, "len(names)": len(self.names)}, "the number of views")
        check_tensor(self.background, "background", shape=[3], floating=True)
        for name, channels in PER_VIEW_BUFFERS.items():
            value = getattr(self, name)
            if value is not None:
                shape = [num_views, height, width] + ([] if channels is None else [channels])
                check_tensor(value, name, shape=shape)
        if self.points is not None:
            check_tensor(self.points, "points", shape=[None, 3], floating=True)
            if self.point_colors is not None:
                check_tensor(self.point_colors, "point_colors", shape=[self.points.shape[0], 3], floating=True)
        for name in ("environment", "relight_environment"):
            if getattr(self, name) is not None:
                check_tensor(getattr(self, name), name, shape=[None, None, 3], floating=True)

    @property
    def num_views(self) -> int:
        return self.images.shape[0]

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]

    def camera_centers(self) -> Tensor:
        """World positions of the cameras ``[V, 3]``."""
        return camera_centers(self.viewmats)

    def downsample(self, factor: int) -> "Scene":
        """The scene at ``1 / factor`` resolution: :data:`AREA_BUFFERS` area-averaged, :data:`CENTRE_BUFFERS`
        sampled at block centres, intrinsics scaled (``K' = diag(1/f, 1/f, 1) K``, exact for pixel
        centres at +0.5)."""
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(f"downsample factor must be an integer >= 1, got {factor!r}")
        if factor == 1:
            return self
        if self.height % factor or self.width % factor:
            raise ValueError(f"downsample factor {factor} does not divide the image size {self.height} x {self.width}")
        buffers = {name: torch.nn.functional.avg_pool2d(getattr(self, name).permute(0, 3, 1, 2), factor)
                   .permute(0, 2, 3, 1).contiguous() for name in AREA_BUFFERS if getattr(self, name) is not None}
        if "normals" in buffers:
            buffers["normals"] = torch.nn.functional.normalize(buffers["normals"], dim=-1)
        start = factor // 2
        buffers.update({name: getattr(self, name)[:, start::factor, start::factor].contiguous()
                        for name in CENTRE_BUFFERS if getattr(self, name) is not None})
        Ks = self.Ks.clone()
        Ks[:, :2] /= factor
        return dataclasses.replace(self, Ks=Ks, **buffers)

    def subset(self, indices: list[int] | Tensor) -> "Scene":
        """The scene restricted to the views ``indices`` (shared fields are kept as they are)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        per_view = {name: getattr(self, name)[index] for name in ("images", "Ks", "viewmats", *PER_VIEW_BUFFERS)
                    if getattr(self, name) is not None}
        return dataclasses.replace(self, names=[self.names[i] for i in index.tolist()], **per_view)
