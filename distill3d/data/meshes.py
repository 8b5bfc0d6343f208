"""Real meshes that ship inside installed packages (pybullet's data folder), by name.

Their units and up axes differ wildly (the duck is 1.7 units tall and y-up, the mug 0.1 and z-up),
so the scene builder normalises every mesh by its bounding box before placing it (see ``builder``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MeshAsset:
    """A mesh file inside pybullet's data folder."""

    file: str  # path relative to pybullet_data.getDataPath()
    up_axis: str  # "y" or "z": the mesh's own up direction, rotated onto the world's +z
    texture: str | None = None  # the mesh's diffuse texture (relative path), used when a material asks for it


MESHES: dict[str, MeshAsset] = {
    "duck": MeshAsset("duck.obj", "y", "duckCM.png"),
    "bunny": MeshAsset("bunny.obj", "y"),
    "teddy": MeshAsset("teddy2_VHACD_CHs.obj", "y"),
    "soccerball": MeshAsset("soccerball.obj", "z", "colors16.png"),
    "stone": MeshAsset("stone.obj", "z"),
    "mug": MeshAsset("objects/mug.obj", "z"),
    "lego": MeshAsset("lego/lego.obj", "z"),
}

# Shapes mitsuba builds analytically (exact geometry: the camera tests rely on the sphere).
PRIMITIVES = ("sphere", "cube")


def pybullet_data_dir() -> Path:
    try:
        import pybullet_data
    except ImportError as err:  # pragma: no cover - pybullet is a declared dependency
        raise ImportError("the scene builder's meshes come from the `pybullet` package: pip install pybullet") from err
    return Path(pybullet_data.getDataPath())


def asset_path(relative: str) -> Path:
    """Absolute path of a file in pybullet's data folder; FileNotFoundError if it is missing."""
    path = pybullet_data_dir() / relative
    if not path.is_file():
        raise FileNotFoundError(f"mesh asset {relative!r} not found in {path.parent} (is pybullet installed fully?)")
    return path


def resolve_mesh(mesh: str) -> tuple[Path, MeshAsset]:
    """Resolves a catalogue name (``MESHES``) or a path to a user's ``.obj``/``.ply`` (assumed z-up)."""
    if mesh in MESHES:
        asset = MESHES[mesh]
        return asset_path(asset.file), asset
    path = Path(mesh)
    if path.suffix.lower() in (".obj", ".ply"):
        if not path.is_file():
            raise FileNotFoundError(f"mesh file not found: {path}")
        return path, MeshAsset(str(path), "z")
    raise KeyError(f"unknown mesh {mesh!r}: use one of {sorted(MESHES)}, {list(PRIMITIVES)}, or a .obj/.ply path")
