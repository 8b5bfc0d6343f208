"""Multi-view scenes: the ``Scene`` container, Blender and COLMAP readers, point-cloud initialisation,
and the mitsuba scene builder (``recipes``, ``builder``) that renders ground-truth scenes offline."""
from __future__ import annotations

from pathlib import Path

from distill3d.data.blender import load_blender
from distill3d.data.colmap import load_colmap, read_colmap_model
from distill3d.data.points import PointInitConfig, initial_points
from distill3d.data.scene import Scene

# the committed, pre-rendered scenes (recipes "default", "glossy"), shipped as package data
SCENES_DIR = Path(__file__).resolve().parents[1] / "scenes"


def bundled_scenes() -> list[str]:
    """Names of the pre-rendered scenes shipped inside the package (folders of ``SCENES_DIR``)."""
    if not SCENES_DIR.is_dir():
        return []
    return sorted(p.name for p in SCENES_DIR.iterdir() if (p / "transforms_train.json").is_file())


def resolve_scene_dir(scene: str | Path) -> Path:
    """The folder a scene argument names: an existing folder as given, else a bundled scene's name
    ("default", "glossy"), so every command and loader that takes a scene folder also takes a name.

    Raises:
        FileNotFoundError: ``scene`` is neither a folder nor a bundled scene's name (the names are listed).
    """
    path = Path(scene)
    if path.is_dir():
        return path
    if path.name == str(scene) and (SCENES_DIR / path.name / "transforms_train.json").is_file():
        return SCENES_DIR / path.name  # a bare name, never a path that merely ends in one
    names = ", ".join(bundled_scenes()) or "none installed"
    raise FileNotFoundError(f"scene folder not found: {path} (nor is it the name of a bundled scene: {names})")


def default_scene_dir(name: str = "default") -> Path:
    """Folder ``scenes/NAME`` of a pre-rendered scene ("default", "glossy"); FileNotFoundError naming the
    command that renders it when it is absent."""
    path = SCENES_DIR / name
    if not (path / "transforms_train.json").is_file():
        raise FileNotFoundError(f"scene {name!r} not found at {path}; render it with "
                                f"`distill3d scenes build {name} --out {path}`")
    return path


def load_scene(path: str | Path, split: str = "train", **kwargs) -> Scene:
    """Reads split ``split`` of a Blender (``transforms_*.json``) or COLMAP (``sparse/0``) scene folder,
    or of a bundled scene given by name (:func:`resolve_scene_dir`)."""
    path = resolve_scene_dir(path)
    if any(path.glob("transforms_*.json")):
        return load_blender(path, split, **kwargs)
    if (path / "sparse" / "0").is_dir():
        return load_colmap(path, split, **kwargs)
    raise FileNotFoundError(f"{path} is neither a Blender scene (transforms_<split>.json) nor a COLMAP scene "
                            "(sparse/0): images without camera poses cannot be used")


__all__ = ["Scene", "load_scene", "load_blender", "load_colmap", "read_colmap_model", "initial_points",
           "PointInitConfig", "default_scene_dir", "SCENES_DIR", "bundled_scenes", "resolve_scene_dir"]
