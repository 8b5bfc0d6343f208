"""Segmentation of feature maps by query: a clicked pixel, a box, text, or per-class prototypes.

Every query is a vector ``q`` in the feature space; each pixel scores ``s(p) = cos(F(p), q)``.

* point:  ``q = F(x, y)``;  box:  ``q = mean of F over the box``;  text: a CLIP-style teacher's text
  embedding (features must be that teacher's);
* binary mask: ``s(p) >= threshold``;
* multi-class: prototypes ``q_k = mean{F(p) : label(p) = k}`` (mask-mean), label ``argmax_k cos(F(p), q_k)``.

Maps coarser than the evaluation grid are bilinearly upsampled before scoring.

With a speed-up decoder (``decoder=``), ``features`` are the rendered ``D_low`` maps and queries stay in the
teacher's space: the scores ``cos(W F(p) + b, q)`` are computed without decoding the map
(:meth:`~distill3d.fields.decoder.SpeedUpDecoder.cosine_similarity`), equal to decode-then-score.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from distillcore.checks import check_range, check_tensor


def _check_map(features: Tensor) -> Tensor:
    return check_tensor(features, "features", ndim=3, floating=True)


def upsample(features: Tensor, size: tuple[int, int]) -> Tensor:
    """``[D, h, w] -> [D, H, W]`` bilinear (unchanged when already that size)."""
    _check_map(features)
    if tuple(features.shape[1:]) == tuple(size):
        return features
    return F.interpolate(features[None], size, mode="bilinear", align_corners=False)[0]


def similarity_map(features: Tensor, query: Tensor, decoder=None) -> Tensor:
    """Cosine similarity ``[H, W]`` of each pixel of ``features [D, H, W]`` to ``query [D]``.

    With ``decoder`` (a :class:`~distill3d.fields.decoder.SpeedUpDecoder`), ``features`` are ``[D_low, H, W]``
    and the similarity is that of the decoded map, computed without decoding (module doc).
    """
    _check_map(features)
    if decoder is not None:
        check_tensor(query, "query", shape=(decoder.teacher_dim,), floating=True)
        rows = features.reshape(features.shape[0], -1).T
        return decoder.cosine_similarity(rows, query[None])[:, 0].reshape(features.shape[1:])
    check_tensor(query, "query", shape=(features.shape[0],), floating=True)
    return F.cosine_similarity(features, query[:, None, None], dim=0, eps=1e-8)


def point_query(features: Tensor, x: int, y: int) -> Tensor:
    """The feature ``[D]`` at pixel column ``x``, row ``y``."""
    _check_map(features)
    height, width = features.shape[1:]
    if not (0 <= x < width and 0 <= y < height):
        raise ValueError(f"point ({x}, {y}) lies outside the {width}x{height} map")
    return features[:, y, x]


def box_query(features: Tensor, box: tuple[int, int, int, int]) -> Tensor:
    """Mean feature ``[D]`` over the box ``(x0, y0, x1, y1)`` (inclusive-exclusive, pixels)."""
    _check_map(features)
    x0, y0, x1, y1 = (int(v) for v in box)
    height, width = features.shape[1:]
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"box {box} must satisfy 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height}")
    return features[:, y0:y1, x0:x1].mean(dim=(1, 2))


def text_query(teacher, prompts: list[str]) -> Tensor:
    """Text embeddings ``[T, D]`` of a CLIP-style teacher (one with ``encode_text``)."""
    if not hasattr(teacher, "encode_text"):
        raise ValueError(f"teacher {getattr(teacher, 'name', teacher)!r} has no text encoder: use a CLIP-style teacher")
    return teacher.encode_text(list(prompts))


def threshold_mask(features: Tensor, query: Tensor, threshold: float, decoder=None) -> Tensor:
    """Boolean mask ``[H, W]`` of pixels whose cosine similarity to ``query`` is at least ``threshold``
    (in [-1, 1]: outside it the mask is trivially all or nothing); ``decoder`` as in :func:`similarity_map`."""
    check_range(threshold, "threshold (a cosine similarity)", -1, 1)
    return similarity_map(features, query, decoder) >= threshold


def mask_prototypes(features: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Mask-mean prototypes: ``([K, D] sums, [K] pixel counts)`` of ``features [D, H, W]`` per label.

    ``labels [H, W]`` (long, ``-1`` ignored) must be on the features' grid. Sums and counts (rather than
    means) let several views be accumulated before dividing.
    """
    _check_map(features)
    check_tensor(labels, "labels", shape=tuple(features.shape[1:]), dtype=torch.long)
    d = features.shape[0]
    rows, flat = features.reshape(d, -1).T, labels.reshape(-1)
    keep = (flat >= 0) & (flat < num_classes)
    sums = torch.zeros(num_classes, d, dtype=features.dtype).index_add_(0, flat[keep], rows[keep])
    counts = torch.bincount(flat[keep], minlength=num_classes).to(features.dtype)
    return sums, counts


def nearest_prototype(features: Tensor, prototypes: Tensor, decoder=None) -> Tensor:
    """Labels ``[H, W]``: index of the prototype ``[K, D]`` with the highest cosine similarity
    (``decoder`` as in :func:`similarity_map`: ``features [D_low, H, W]``, prototypes in the teacher's space)."""
    _check_map(features)
    if decoder is not None:
        check_tensor(features, "features", shape=(decoder.low_dim, None, None), finite=False)  # scanned above
    width = features.shape[0] if decoder is None else decoder.teacher_dim
    check_tensor(prototypes, "prototypes", shape=(None, width), floating=True)
    rows = features.reshape(features.shape[0], -1).T
    # argmax_k cos(F(p), q_k) = argmax_k F(p) . q_k / |q_k|: the pixel's own norm does not pick the winner
    unit = F.normalize(prototypes, dim=1)
    if decoder is not None:
        weight, offset = decoder.fold_queries(unit.to(features))
        scores = torch.addmm(offset, rows, weight)
    else:
        scores = rows @ unit.to(features).T
    return scores.argmax(dim=1).reshape(features.shape[1:])


def mean_iou(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = -1) -> float:
    """Mean over classes present in ``pred`` or ``target`` of ``|P_k & T_k| / |P_k | T_k|``.

    Pixels whose target is ``ignore_index`` are left out.
    """
    check_tensor(pred, "pred", ndim=2, dtype=torch.long)
    check_tensor(target, "target", shape=tuple(pred.shape), dtype=torch.long)
    keep = target != ignore_index
    p, t = pred[keep], target[keep]
    ious = []
    for k in range(num_classes):
        union = int(((p == k) | (t == k)).sum())
        if union:
            ious.append(int(((p == k) & (t == k)).sum()) / union)
    if not ious:
        raise ValueError("no labelled pixels to score")
    return sum(ious) / len(ious)
