"""Train / test splits of a scene folder, the same way for every trainer.

* Blender scenes: ``transforms_train.json``; the test split is ``transforms_test.json`` when present.
* COLMAP scenes: images sorted by name, every ``test_every``-th one (index % test_every == 0) is a test
  view, the rest train (the 3DGS / Mip-NeRF 360 hold-out); ``test_every = 0`` trains on every image and
  evaluates on none. The image folder is ``images``, or the photos reduced ahead of time in
  ``images_2/4/8`` (chosen with ``images``, or picked for a ``downsample`` factor when present).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from distill3d.data.blender import load_blender
from distill3d.data.colmap import colmap_image_folder, load_colmap
from distill3d.data.scene import Scene

log = logging.getLogger(f"distillkit.{__name__}")  # the hierarchy distillcore.config_cli prints


@dataclass
class SceneSplits:
    train: Scene
    test: Scene | None
    downsample: int  # the factor still to apply to both splits (1 when images_<factor> was read)
    images: str | None  # the COLMAP image folder read (None for Blender scenes)


def is_colmap_scene(path: Path) -> bool:
    return not any(path.glob("transforms_*.json")) and (path / "sparse" / "0").is_dir()


def load_scene_splits(scene_dir: str | Path, *, test_every: int = 8, images: str | None = None, downsample: int = 1,
                      **kwargs) -> SceneSplits:
    """Reads the train and test splits of a Blender or COLMAP scene folder (module docstring).

    Args:
        test_every: COLMAP hold-out: image i (sorted by name) is a test view when i % test_every == 0;
            0: no test split. Trainers take it from ``distill3d.fields.config.SceneDataConfig``.
        images: COLMAP image folder under ``scene_dir``; None picks ``images_<downsample>`` if present.
        downsample: the wanted reduction of the full-resolution photos; the returned ``downsample``
            is what the caller still has to apply.
        **kwargs: passed to the reader (``background`` for Blender, ``skip_unposed`` for COLMAP).
    """
    from distill3d.data import resolve_scene_dir  # at call time: distill3d.data's __init__ may import this module

    scene_dir = resolve_scene_dir(scene_dir)  # a folder or a bundled scene's name
    if test_every < 0:
        raise ValueError(f"test_every must be >= 0 (0: no test split), got {test_every}")
    if not is_colmap_scene(scene_dir):
        if images is not None:
            raise ValueError(f"images={images!r} chooses a COLMAP image folder, but {scene_dir} is not a "
                             "COLMAP scene (it has transforms_*.json or no sparse/0)")
        train = load_blender(scene_dir, "train", **kwargs)
        test = load_blender(scene_dir, "test", min_views=1, **kwargs) \
            if (scene_dir / "transforms_test.json").is_file() else None
        return SceneSplits(train, test, downsample, None)
    folder, left = colmap_image_folder(scene_dir, images, downsample)
    if folder != "images":
        log.info("reading COLMAP photos from %s/%s%s", scene_dir.name, folder,
                 f", then downsampling them {left} x" if left > 1 else "")
    train = load_colmap(scene_dir, "train", images_dir=folder, test_every=test_every, **kwargs)
    test = load_colmap(scene_dir, "test", images_dir=folder, test_every=test_every, min_views=1, **kwargs) \
        if test_every > 0 else None
    return SceneSplits(train, test, left, folder)


__all__ = ["SceneSplits", "load_scene_splits", "is_colmap_scene"]
