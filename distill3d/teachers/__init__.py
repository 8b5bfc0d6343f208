"""2D teachers behind one interface ``image [3, H, W] in [0, 1] -> features [D, h, w]``.

``build_teacher(name)`` returns a frozen teacher; ``available_teachers()`` lists them. Built-in:
``efficientnet-lite0`` (+ ``-s8``, ``-multiscale``), ``xfeat``, ``disk`` with pretrained weights
that ship in packages, and ``sam`` / ``clip`` adapters that load the user's checkpoint.
"""
from . import clip, disk, efficientnet, sam, xfeat  # noqa: F401  (registers the built-in teachers)
from .base import Teacher, check_image
from .cache import FeatureCache, scene_features
from .pca import PCAProjection, fit_pca, pca_to_rgb
from .registry import available_teachers, build_teacher, register_teacher

__all__ = [
    "Teacher", "check_image", "FeatureCache", "scene_features", "PCAProjection", "fit_pca", "pca_to_rgb",
    "available_teachers", "build_teacher", "register_teacher",
]
