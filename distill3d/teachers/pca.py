"""PCA-to-RGB visualisation of any feature map ``[D, h, w] -> [3, h, w]`` in [0, 1].

Fit on one or several maps (fit once, apply to every view, so colours agree across views):

    X = rows of features (pixels x D),  mu = mean(X),  X - mu = U S V^T,
    rgb = clip((  (f - mu) V[:, :3] - lo ) / (hi - lo), 0, 1)

with ``lo, hi`` the ``quantile`` and ``1 - quantile`` values of each projected channel on the fit data
(robust to a few extreme pixels). Each component's sign is fixed so its largest-magnitude loading is
positive, which makes the colours deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from distillcore.checks import check_tensor

MAX_FIT_ROWS = 65536  # rows used to fit; a strided subsample above this keeps the SVD cheap


@dataclass
class PCAProjection:
    mean: Tensor  # [D]
    components: Tensor  # [3, D]
    low: Tensor  # [3]
    high: Tensor  # [3]

    def project(self, features: Tensor) -> Tensor:
        """Raw principal coordinates ``[3, h, w]`` of ``features [D, h, w]``."""
        check_tensor(features, "features", ndim=3, floating=True)
        if features.shape[0] != self.mean.shape[0]:
            raise ValueError(f"features has {features.shape[0]} channels, the PCA was fit on {self.mean.shape[0]}")
        d, h, w = features.shape
        rows = features.reshape(d, -1).T.float() - self.mean
        return (rows @ self.components.T).T.reshape(3, h, w)

    def colors(self, coords: Tensor) -> Tensor:
        """RGB ``[3, h, w]`` in [0, 1] of principal coordinates ``coords [3, h, w]`` (:meth:`project`'s
        output, or the same coordinates computed another way, e.g. folded through a linear decoder)."""
        check_tensor(coords, "coords", ndim=3, shape=(3, None, None), floating=True)
        scale = (self.high - self.low).clamp_min(1e-8)
        return ((coords - self.low[:, None, None]) / scale[:, None, None]).clamp(0.0, 1.0)

    def __call__(self, features: Tensor) -> Tensor:
        """RGB ``[3, h, w]`` in [0, 1] of ``features [D, h, w]``."""
        return self.colors(self.project(features))


def fit_pca(features: Tensor | list[Tensor], quantile: float = 0.01) -> PCAProjection:
    """Fits the 3-component PCA colour map on one map ``[D, h, w]`` or a list of maps with equal D."""
    maps = [features] if isinstance(features, Tensor) else list(features)
    if not maps:
        raise ValueError("features is an empty list")
    for i, f in enumerate(maps):
        check_tensor(f, f"features[{i}]", ndim=3, floating=True)
    dims = {f.shape[0] for f in maps}
    if len(dims) > 1:
        raise ValueError(f"feature maps disagree on the channel count: {sorted(dims)}")
    if not 0.0 <= quantile < 0.5:
        raise ValueError(f"quantile must be in [0, 0.5), got {quantile}")
    rows = torch.cat([f.reshape(f.shape[0], -1).T.float() for f in maps])
    if rows.shape[0] > MAX_FIT_ROWS:
        rows = rows[:: -(-rows.shape[0] // MAX_FIT_ROWS)]
    mean = rows.mean(0)
    _, _, vh = torch.linalg.svd(rows - mean, full_matrices=False)
    components = torch.zeros(3, rows.shape[1])
    k = min(3, vh.shape[0])
    components[:k] = vh[:k]
    strongest = components.abs().argmax(dim=1)
    signs = torch.sign(components[torch.arange(3), strongest])
    components = components * torch.where(signs == 0, torch.ones_like(signs), signs)[:, None]
    coords = (rows - mean) @ components.T
    low = torch.quantile(coords, quantile, dim=0)
    high = torch.quantile(coords, 1.0 - quantile, dim=0)
    return PCAProjection(mean, components, low, high)


def pca_to_rgb(features: Tensor, quantile: float = 0.01) -> Tensor:
    """PCA colours ``[3, h, w]`` of one map ``[D, h, w]`` (fit on itself)."""
    return fit_pca(features, quantile)(features)
