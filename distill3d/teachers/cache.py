"""On-disk cache of teacher features, keyed by scene + teacher + image.

Layout: ``root / scene / teacher.fingerprint() / f"{image_name}-{sha1(image)[:16]}.pt"``. The
teacher's fingerprint changes with its configuration, and the image's content hash makes an edited
image a miss rather than a stale hit. Writes are atomic (:mod:`distillcore.serialization`), so an
interrupted run never leaves a truncated entry; entries are read as plain tensors (nothing in a cache
file runs), and an unreadable or foreign entry is a miss that is computed again and overwritten.

Under a process group (:mod:`distillcore.dist`) :meth:`FeatureCache.encode_all` shares the work: of the
``n`` images in order, rank ``r`` of ``R`` looks up (and on a miss computes and writes) images
``r, r + R, r + 2R, ...``; after a barrier every rank reads the others' entries. The files, their names
and contents are those a single process writes, so a run on any number of ranks reuses them.
"""
from __future__ import annotations

import hashlib
import logging
import pathlib
import re

import torch
from torch import Tensor
from tqdm import tqdm

from distillcore import dist
from distillcore.serialization import load_state, save_atomic

from .base import Teacher, check_image

log = logging.getLogger(f"distillkit.{__name__}")

# where the command lines keep teacher features unless told otherwise
DEFAULT_CACHE = pathlib.Path.home() / ".cache" / "distillkit" / "features"


def image_digest(image: Tensor) -> str:
    """A content hash of ``image`` (its float32 bytes)."""
    data = image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.sha1(data).hexdigest()[:16]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "image"


class FeatureCache:
    """Teacher features of a scene's images, computed once and read back from ``root``.

    Attributes ``hits`` and ``misses`` count look-ups since construction.
    """

    def __init__(self, root: str | pathlib.Path, scene: str, teacher: Teacher):
        self.teacher = teacher
        self.directory = pathlib.Path(root) / _safe(scene) / _safe(teacher.fingerprint())
        self.hits = 0
        self.misses = 0

    def path(self, image_name: str, image: Tensor) -> pathlib.Path:
        return self.directory / f"{_safe(image_name)}-{image_digest(image)}.pt"

    def __call__(self, image_name: str, image: Tensor) -> Tensor:
        """Features ``[D, h, w]`` of ``image [3, H, W]``, from disk when cached."""
        check_image(image)
        path = self.path(image_name, image)
        if path.is_file():
            try:
                features = load_state(path, what="teacher feature cache entry")
            except ValueError as err:
                log.warning("%s; computing it again", err)
                features = None
            expected = [self.teacher.dim, *self.teacher.grid(*image.shape[1:])]
            if isinstance(features, Tensor) and list(features.shape) == expected:
                self.hits += 1
                return features
        self.misses += 1
        features = self.teacher(image).cpu()
        save_atomic(features, path)
        return features

    def encode_all(self, images: dict[str, Tensor], progress: bool = True) -> dict[str, Tensor]:
        """Features of every ``name -> image [3, H, W]``; on several ranks each computes its share
        (module doc) and the call is collective. The bar (``progress``) counts this rank's share."""
        ctx = dist.context()
        names = list(images)[ctx.rank::ctx.world_size]
        items = tqdm(names, desc=f"teacher {self.teacher.name}", disable=not progress, leave=False)
        own = {name: self(name, images[name]) for name in items}
        if not ctx.distributed:
            return own
        dist.barrier()  # every rank's share is on disk
        # the other ranks' entries are hits now; a missing one (a full disk, another cache root per
        # machine) is computed here as in a single process
        return {name: own[name] if name in own else self(name, image) for name, image in images.items()}


def scene_features(scenes: list, scene_name: str, teacher: Teacher, cache_dir: str | pathlib.Path,
                   progress: bool = True) -> dict[str, Tensor]:
    """Teacher maps ``view name -> [D, h, w]`` of every image of ``scenes`` (``distill3d.data.Scene``
    splits, images ``[V, H, W, 3]``), through the cache ``cache_dir / scene_name``."""
    cache = FeatureCache(cache_dir, scene_name, teacher)
    names = [name for scene in scenes for name in scene.names]
    if len(set(names)) != len(names):
        raise ValueError("view names must be unique across the splits (they key the teacher maps)")
    return cache.encode_all({name: scene.images[i].permute(2, 0, 1)
                             for scene in scenes for i, name in enumerate(scene.names)}, progress)
