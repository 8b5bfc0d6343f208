"""Query-segmentation mIoU of feature maps against a scene's object masks.

Protocol (the issue's, and the paper's spirit): one prototype per object id, the mask-mean of the
features over reference views (the training views); every held-out view's pixels take the label of
the most cosine-similar prototype; mIoU against the held-out masks. Maps coarser than the masks are
bilinearly upsampled first, so a teacher's H/16 map and a field's full-resolution render are scored
on the same pixels.

With a speed-up decoder (``decoder=``) the maps are the rendered ``D_low`` ones: prototypes are mask-means
in ``D_low`` lifted by the decoder (a mean commutes with the affine decode) and the scores are computed
without decoding (:mod:`distill3d.query.segment`), so the labels equal those of the decoded maps.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .segment import mask_prototypes, mean_iou, nearest_prototype, upsample


def prototypes_from_views(feature_maps: list[Tensor], masks: list[Tensor], num_classes: int,
                          decoder=None) -> Tensor:
    """Mask-mean prototypes ``[K, D]`` over several views (``[D, h, w]`` maps, ``[H, W]`` long masks);
    with ``decoder``, of the decoded ``[D_low, h, w]`` maps (module doc).

    Raises if a class never appears in the reference masks.
    """
    if len(feature_maps) != len(masks) or not feature_maps:
        raise ValueError(f"need as many masks as feature maps (>= 1), got {len(feature_maps)} and {len(masks)}")
    sums = counts = None
    for fmap, mask in zip(feature_maps, masks):
        s, c = mask_prototypes(upsample(fmap, tuple(mask.shape)), mask, num_classes)
        sums, counts = (s, c) if sums is None else (sums + s, counts + c)
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"classes {missing} never appear in the reference masks")
    means = sums / counts[:, None]
    return decoder.decode_rows(means) if decoder is not None else means


def segment_views(feature_maps: list[Tensor], prototypes: Tensor, size: tuple[int, int],
                  decoder=None) -> list[Tensor]:
    """Nearest-prototype label maps ``[H, W]`` of each ``[D, h, w]`` map upsampled to ``size``
    (``[D_low, h, w]`` maps with ``decoder``, module doc)."""
    return [nearest_prototype(upsample(fmap, size), prototypes, decoder) for fmap in feature_maps]


def segmentation_miou(reference_maps: list[Tensor], reference_masks: list[Tensor], eval_maps: list[Tensor],
                      eval_masks: list[Tensor], num_classes: int, decoder=None) -> float:
    """Mean over held-out views of the nearest-prototype mIoU (prototypes from the reference views;
    ``decoder`` for rendered ``D_low`` maps, module doc)."""
    prototypes = prototypes_from_views(reference_maps, reference_masks, num_classes, decoder)
    if len(eval_maps) != len(eval_masks) or not eval_maps:
        raise ValueError(f"need as many eval masks as eval maps (>= 1), got {len(eval_maps)} and {len(eval_masks)}")
    labels = segment_views(eval_maps, prototypes, tuple(eval_masks[0].shape), decoder)
    return sum(mean_iou(p, m, num_classes) for p, m in zip(labels, eval_masks)) / len(eval_masks)
