"""Feature 3DGS speed-up decoder: render a low-dimensional feature map, lift it with a 1x1 conv.

    F_teacher_space(p) = W f_low(p) + b,   W: [D, D_low],  f_low = rendered [D_low, H, W]

Rasterisation cost grows with the rendered width, so rendering ``D_low`` channels instead of the
teacher's ``D`` and decoding per pixel trades a small (linear) network for a cheaper render. Because
the decoder is linear and per pixel it commutes with the alpha blending: decoding each Gaussian's
feature first would give the same image wherever the Gaussians cover the pixel (elsewhere the bias
would be weighted by the coverage).

PCA initialisation (``DecoderConfig.init = "pca"``): with the teacher's feature vectors' mean ``mu``
and covariance eigenpairs ``(lambda_j, u_j)`` (descending), start from

    W = [u_1 sqrt(lambda_1), ..., u_k sqrt(lambda_k)],   b = mu,

so the decoder's image is the teacher's top-k principal subspace (the directions that carry most of
its variance, instead of a random k-plane through the origin), and a rendered
``f = diag(lambda)^(-1/2) U_k^T (t - mu)`` decodes to the PCA projection ``mu + U_k U_k^T (t - mu)``
of a teacher vector ``t``. Whitening gives every rendered channel unit variance, the scale the
Gaussians' features (zero at start, Adam steps of the features learning rate) can reach.

Queries without decoding (:meth:`SpeedUpDecoder.cosine_similarity`): a segmentation query scores each
pixel by ``cos(W f + b, q)`` with ``q`` in the teacher's space, and both terms of the cosine fold into
``D_low``-sized algebra,

    (W f + b) . q = f . (W^T q) + b . q,       |W f + b|^2 = |R f + Q^T b|^2 + |b - Q Q^T b|^2

with ``W = Q R`` (``Q`` orthonormal columns, ``R`` ``D_low x D_low``): a sum of squares, as accurate as
decoding even where ``|W f + b|`` is much shorter than ``|b|`` (the expansion
``f^T W^T W f + 2 f . W^T b + |b|^2`` cancels there), so a consumer of the scores (masks,
nearest-prototype labels) never writes the ``D``-channel map: per pixel ``O(D_low (D_low + K))`` for
``K`` queries instead of ``O(D (D_low + K))``. A nearest-prototype label needs only the dot products
with the unit prototypes (the pixel's own norm does not change which prototype wins), ``O(D_low K)`` per
pixel. Bilinear upsampling commutes with the decode (its weights sum to one), so maps are upsampled in
``D_low`` as well.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from distillcore.checks import check_tensor


def teacher_pca(maps: list[Tensor], k: int) -> tuple[Tensor, Tensor]:
    """Mean ``[D]`` and whitened top-``k`` basis ``[D, k]`` (``u_j sqrt(lambda_j)``, module doc) of
    the feature vectors of every pixel of ``maps`` (computed in float64).

    Shapes:
        maps: ``[D, h, w]`` each (one D).
    """
    if not maps:
        raise ValueError("teacher_pca needs at least one teacher map")
    for i, fmap in enumerate(maps):
        check_tensor(fmap, f"teacher map {i}", ndim=3, shape=(maps[0].shape[0], None, None), floating=True)
    vectors = torch.cat([fmap.detach().double().flatten(1).T for fmap in maps])  # [N, D]
    if not 1 <= k <= vectors.shape[1]:
        raise ValueError(f"k must be in [1, D = {vectors.shape[1]}], got {k}")
    mean = vectors.mean(0)
    centred = vectors - mean
    eigenvalues, eigenvectors = torch.linalg.eigh(centred.T @ centred / max(vectors.shape[0] - 1, 1))
    top = torch.argsort(eigenvalues, descending=True)[:k]
    # a direction without variance (fewer pixels than k) keeps a small scale rather than a dead column
    std = eigenvalues[top].clamp_min(0).sqrt().clamp_min(1e-3 * float(eigenvalues.max().clamp_min(1e-12).sqrt()))
    basis = eigenvectors[:, top] * std
    dtype = maps[0].dtype
    return mean.to(dtype), basis.to(dtype)


class SpeedUpDecoder(nn.Module):
    """1x1 convolution ``[B, D_low, H, W] -> [B, D, H, W]``."""

    def __init__(self, low_dim: int, teacher_dim: int):
        super().__init__()
        if low_dim < 1 or teacher_dim < 1:
            raise ValueError(f"low_dim and teacher_dim must be >= 1, got {low_dim} and {teacher_dim}")
        self.low_dim, self.teacher_dim = low_dim, teacher_dim
        self.conv = nn.Conv2d(low_dim, teacher_dim, kernel_size=1)

    @torch.no_grad()
    def init_pca(self, mean: Tensor, basis: Tensor) -> None:
        """Sets ``W = basis`` and ``b = mean`` (:func:`teacher_pca`'s output, module doc).

        Shapes:
            mean: ``[D]``; basis: ``[D, D_low]``.
        """
        check_tensor(mean, "mean", shape=(self.teacher_dim,), floating=True)
        check_tensor(basis, "basis", shape=(self.teacher_dim, self.low_dim), floating=True)
        self.conv.weight.copy_(basis[:, :, None, None])
        self.conv.bias.copy_(mean)

    def forward(self, features: Tensor) -> Tensor:
        check_tensor(features, "features", ndim=4, shape=(None, self.low_dim, None, None), floating=True)
        return self.conv(features)

    def fold_queries(self, queries: Tensor) -> tuple[Tensor, Tensor]:
        """``(W^T Q^T [D_low, K], Q b [K])``: the dot products of the decoded rows with the queries as an
        affine map of the rendered rows, ``(W f + b) . q_k = f . (W^T q_k) + b . q_k`` (module doc).

        Shapes:
            queries: ``[K, D]``.
        """
        check_tensor(queries, "queries", ndim=2, shape=(None, self.teacher_dim), floating=True)
        weight, bias, q = self.conv.weight[:, :, 0, 0].double(), self.conv.bias.double(), queries.double()
        return (weight.T @ q.T).to(queries.dtype), (q @ bias).to(queries.dtype)

    def cosine_similarity(self, features: Tensor, queries: Tensor, eps: float = 1e-8) -> Tensor:
        """Cosine similarity ``[N, K]`` of each decoded row ``W f_n + b`` to each teacher-space query
        ``q_k``, computed in ``D_low`` without decoding (module doc).

        Shapes:
            features: ``[N, D_low]``; queries: ``[K, D]``.
        """
        check_tensor(features, "features", ndim=2, shape=(None, self.low_dim), floating=True)
        folded_queries, query_offsets = self.fold_queries(queries)
        # The norm as a sum of squares (module doc), not f^T W^T W f + 2 f . W^T b + |b|^2: where the decoded
        # vector is much shorter than b those terms cancel, and in float32 the expansion lost 100x the accuracy
        # of decoding. The D_low-sized factors in float64 (cheap).
        weight, bias = self.conv.weight[:, :, 0, 0].double(), self.conv.bias.double()
        basis, triangle = torch.linalg.qr(weight)  # W = Q R, Q orthonormal columns
        inside = basis.T @ bias
        outside = (bias - basis @ inside).square().sum()
        dots = features @ folded_queries + query_offsets
        squared = torch.addmm(inside.to(features), features, triangle.T.to(features)).square().sum(1)
        squared = squared + outside.to(features)
        norms = squared.sqrt().clamp_min(eps)
        return dots / (norms[:, None] * queries.norm(dim=1).clamp_min(eps))

    def decode_rows(self, features: Tensor) -> Tensor:
        """The same map on rows ``[N, D_low] -> [N, D]`` (e.g. per-Gaussian features for editing)."""
        check_tensor(features, "features", ndim=2, shape=(None, self.low_dim), floating=True)
        return features @ self.conv.weight[:, :, 0, 0].T + self.conv.bias
