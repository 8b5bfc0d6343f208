"""A tiny synthetic scene for Feature 3DGS tests: ground-truth Gaussians render the images and the
teacher maps (their features, rendered and area-pooled to a coarser grid), so both are learnable."""
import math

import torch
import torch.nn.functional as F

from distill3d.data.cameras import intrinsics_from_fov, look_at_opengl, opengl_to_viewmat
from distill3d.data import Scene
from distill3d.render import rasterize


def ring_cameras(count: int, radius: float = 3.0, height: float = 1.0, offset: float = 0.0):
    angles = torch.arange(count, dtype=torch.float64) * (2 * math.pi / count) + offset
    eyes = torch.stack([radius * angles.cos(), radius * angles.sin(), torch.full_like(angles, height)], 1)
    c2w = look_at_opengl(eyes, torch.zeros(3, dtype=torch.float64), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    return opengl_to_viewmat(c2w).float()


def tiny_scene(num_train: int = 8, num_test: int = 2, size: int = 32, feature_dim: int = 4, cell: int = 4,
               num_gaussians: int = 40, seed: int = 0):
    """``(train Scene, test Scene, teacher maps name -> [feature_dim, size / cell, size / cell])``."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(num_gaussians, 3, generator=g) * 2 - 1) * 0.6
    quats = torch.randn(num_gaussians, 4, generator=g)
    scales = torch.rand(num_gaussians, 3, generator=g) * 0.15 + 0.08
    opacities = torch.rand(num_gaussians, generator=g) * 0.5 + 0.5
    colors = torch.rand(num_gaussians, 3, generator=g)
    # features: two "objects" (half of the Gaussians each) with distinct directions + noise
    labels = (means[:, 0] > 0).long()
    prototypes = F.normalize(torch.randn(2, feature_dim, generator=g), dim=1)
    features = prototypes[labels] + 0.05 * torch.randn(num_gaussians, feature_dim, generator=g)
    K = intrinsics_from_fov(math.radians(50), size, size).float()
    viewmats = torch.cat([ring_cameras(num_train), ring_cameras(num_test, offset=math.pi / num_test / 2 + 0.3)])
    rgb, feats, alpha, _ = rasterize(means, quats, scales, opacities, colors, viewmats, K.expand(len(viewmats), 3, 3),
                                 size, size, features=features, backend="torch")
    names = [f"r_{i}" for i in range(len(viewmats))]
    maps = {name: F.avg_pool2d(feats[i].permute(2, 0, 1)[None], cell)[0] for i, name in enumerate(names)}
    # ground-truth object ids: which half of the Gaussians dominates each pixel's features (0 = empty)
    masks = torch.where(alpha[..., 0] < 0.5, 0, 1 + (feats @ prototypes[1] > feats @ prototypes[0]).long())
    ks = K.expand(len(viewmats), 3, 3).clone()
    images = rgb.clamp(0, 1)
    train = Scene(images[:num_train], ks[:num_train], viewmats[:num_train], names[:num_train], masks=masks[:num_train])
    test = Scene(images[num_train:], ks[num_train:], viewmats[num_train:], names[num_train:], split="test",
                 masks=masks[num_train:])
    return train, test, maps
