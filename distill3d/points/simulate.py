"""Simulated LiDAR detection scenes: real meshes on a ground plane, scanned by :mod:`.lidar`.

Each scene places a random number of labelled objects (one mesh per class, e.g. the pybullet duck as a
car-sized class and the teddy as a pedestrian-sized one) and unlabelled clutter at random positions
and headings on flat ground, without overlaps. The box of an object is the bounding box of its
normalised mesh (:mod:`.meshes`), so labels are exact. The KITTI occlusion level of an object is
measured, not guessed: rays are cast from the sensor to points sampled on its surface, and the share
of those whose first hit is *another* object (self-occluded back faces do not count) sets the level
through ``occlusion_thresholds``; an object hit by fewer than ``min_points_visible`` LiDAR returns gets
level 3 (unknown), which evaluation ignores.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from distillcore.extras import require_extra

from distill3d.points.lidar import LidarConfig, cast_rays, scan_scene
from distill3d.points.meshes import MeshSpec, normalized_mesh, place
from distill3d.points.scan import OCCLUSION_UNKNOWN, Scan

if TYPE_CHECKING:
    import open3d as o3d


@dataclass(frozen=True)
class ObjectClass:
    """A labelled class: its mesh, length range (metres), surface reflectance and the IoU a
    detection needs to count as correct (KITTI uses 0.7 for cars and 0.5 for pedestrians)."""

    name: str
    mesh: MeshSpec
    length_range: tuple[float, float]
    reflectance: float
    iou_threshold: float


DEFAULT_CLASSES = (
    ObjectClass("Duck", MeshSpec("duck.obj", "y"), (2.6, 3.6), 0.6, 0.7),
    ObjectClass("Teddy", MeshSpec("teddy2_VHACD_CHs.obj", "z"), (1.1, 1.6), 0.35, 0.5),
)
DEFAULT_CLUTTER = (MeshSpec("soccerball.obj", "z"), MeshSpec("bunny.obj", "y"), MeshSpec("cube.obj", "z"))


@dataclass
class SimulationConfig:
    """Scene layout. Positions are in the LiDAR frame; the detection area is in front of the sensor."""

    classes: tuple[ObjectClass, ...] = DEFAULT_CLASSES
    clutter: tuple[MeshSpec, ...] = DEFAULT_CLUTTER
    clutter_length_range: tuple[float, float] = (0.5, 1.5)
    clutter_reflectance: float = 0.45
    ground_reflectance: float = 0.2
    objects_per_scene: tuple[int, int] = (3, 7)  # inclusive range, labelled objects
    clutter_per_scene: tuple[int, int] = (0, 3)
    x_range: tuple[float, float] = (3.0, 24.0)
    y_range: tuple[float, float] = (-11.0, 11.0)
    min_gap: float = 0.4  # free space between footprints (metres)
    max_placement_tries: int = 200
    occlusion_samples: int = 96
    occlusion_thresholds: tuple[float, float] = (0.15, 0.5)  # occluded share -> level 0 | 1 | 2
    min_points_visible: int = 5
    lidar: LidarConfig = field(default_factory=LidarConfig)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)


@dataclass
class _Placed:
    vertices: np.ndarray
    triangles: np.ndarray
    box: np.ndarray  # [7]
    label: int  # -1 for clutter
    reflectance: float


def _sample_layout(cfg: SimulationConfig, rng: np.random.Generator) -> list[_Placed]:
    ground_z = -cfg.lidar.mount_height
    num_objects = int(rng.integers(cfg.objects_per_scene[0], cfg.objects_per_scene[1] + 1))
    wanted = []
    for _ in range(num_objects):
        label = int(rng.integers(len(cfg.classes)))
        c = cfg.classes[label]
        wanted.append((label, c.mesh, c.length_range, c.reflectance))
    wanted += [(-1, cfg.clutter[int(rng.integers(len(cfg.clutter)))], cfg.clutter_length_range, cfg.clutter_reflectance)
               for _ in range(rng.integers(cfg.clutter_per_scene[0], cfg.clutter_per_scene[1] + 1))]
    placed: list[_Placed] = []
    for label, mesh, length_range, reflectance in wanted:
        vertices, triangles, size = normalized_mesh(mesh, float(rng.uniform(*length_range)))
        radius = 0.5 * float(np.hypot(size[0], size[1]))
        for _ in range(cfg.max_placement_tries):
            xy = np.array([rng.uniform(*cfg.x_range), rng.uniform(*cfg.y_range)])
            if all(np.hypot(*(xy - p.box[:2])) >= radius + 0.5 * np.hypot(*p.box[3:5]) + cfg.min_gap for p in placed):
                break
        else:
            continue  # the scene is full: fewer objects rather than overlapping ones
        yaw = float(rng.uniform(-np.pi, np.pi))
        center = np.array([xy[0], xy[1], ground_z + size[2] / 2])
        box = np.array([*center, *size, yaw], dtype=np.float32)
        placed.append(_Placed(place(vertices, center, yaw), triangles, box, label, reflectance))
    return placed


def _ground(cfg: SimulationConfig) -> tuple[np.ndarray, np.ndarray]:
    r, z = cfg.lidar.max_range * 1.5, -cfg.lidar.mount_height
    vertices = np.array([[-r, -r, z], [r, -r, z], [r, r, z], [-r, r, z]])
    return vertices, np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int32)


def sample_surface(vertices: np.ndarray, triangles: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` points ``[count, 3]`` uniform over the mesh surface (area-weighted triangle, then
    uniform barycentric coordinates); drawn from ``rng`` so scenes are reproducible."""
    corners = vertices[triangles]  # [T, 3, 3]
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    tri = rng.choice(len(triangles), size=count, p=area / area.sum())
    u, v = rng.random(count), rng.random(count)
    flip = u + v > 1  # fold the unit square onto the triangle
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    c = corners[tri]
    return c[:, 0] + u[:, None] * (c[:, 1] - c[:, 0]) + v[:, None] * (c[:, 2] - c[:, 0])


def _occlusion_share(
    scene: o3d.t.geometry.RaycastingScene, obj: _Placed, geometry_id: int, samples: int, rng: np.random.Generator
) -> float:
    targets = sample_surface(obj.vertices, obj.triangles, samples, rng)
    dist = np.linalg.norm(targets, axis=1)
    hit_t, hit_id, _ = cast_rays(scene, np.zeros_like(targets), targets / dist[:, None])
    # Slack for the sample lying a hair behind the surface the ray first meets.
    reached_own = (hit_id == geometry_id) & (hit_t >= dist - 0.05)
    blocked_by_other = (hit_id != geometry_id) & (hit_t < dist - 0.05)
    facing = reached_own | blocked_by_other
    return float(blocked_by_other.sum() / max(int(facing.sum()), 1))


def simulate_scene(cfg: SimulationConfig, rng: np.random.Generator, frame_id: str = "") -> Scan:
    """One scan with exact labels (see the module docstring)."""
    o3d = require_extra("open3d", "points")  # at use: the module imports (and --help works) without it
    objects = _sample_layout(cfg, rng)
    scene = o3d.t.geometry.RaycastingScene()
    reflectance = [cfg.ground_reflectance]
    scene.add_triangles(*(o3d.core.Tensor(a.astype(t)) for a, t in zip(_ground(cfg), (np.float32, np.uint32))))
    ids = []
    for obj in objects:
        ids.append(scene.add_triangles(o3d.core.Tensor(obj.vertices.astype(np.float32)), o3d.core.Tensor(obj.triangles.astype(np.uint32))))
        reflectance.append(obj.reflectance)
    points, hit_geometry = scan_scene(scene, np.array(reflectance + [0.0], dtype=np.float32), cfg.lidar, rng)

    boxes, labels, occlusion = [], [], []
    for obj, gid in zip(objects, ids):
        if obj.label < 0:
            continue
        if int((hit_geometry == gid).sum()) < cfg.min_points_visible:
            level = OCCLUSION_UNKNOWN
        else:
            share = _occlusion_share(scene, obj, gid, cfg.occlusion_samples, rng)
            level = int(np.searchsorted(np.asarray(cfg.occlusion_thresholds), share, side="right"))
        boxes.append(obj.box)
        labels.append(obj.label)
        occlusion.append(level)
    return Scan(
        points=points,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 7),
        labels=np.asarray(labels, np.int64),
        occlusion=np.asarray(occlusion, np.int64),
        frame_id=frame_id,
    )


def simulate_dataset(cfg: SimulationConfig, num_scans: int, seed: int, *, progress: bool = False) -> list[Scan]:
    """``num_scans`` scenes, frame ids ``000000, 000001, ...``, reproducible from ``seed``."""
    if num_scans <= 0:
        raise ValueError(f"num_scans must be > 0, got {num_scans}")
    for module in ("open3d", "pybullet_data"):  # before any work: a missing extra is one clear error
        require_extra(module, "points")
    rng = np.random.default_rng(seed)
    return [simulate_scene(cfg, rng, f"{i:06d}") for i in tqdm(range(num_scans), desc="simulate", disable=not progress)]


__all__ = ["ObjectClass", "SimulationConfig", "sample_surface", "DEFAULT_CLASSES", "DEFAULT_CLUTTER", "simulate_scene", "simulate_dataset"]
