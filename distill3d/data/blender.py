"""Reader for Blender / NeRF-synthetic scenes: ``transforms_{split}.json`` + images.

Format: ``camera_angle_x`` (radians; ``fl_x``/``fl_y``/``cx``/``cy`` override it when present) and
``frames``, each with ``file_path`` (extension optional, ".png" assumed) and ``transform_matrix``, an
OpenGL camera-to-world 4 x 4. RGBA images are composited over ``background``.

The scene builder adds per-frame buffers that this reader loads when every frame of the split has
them (layout in ``builder``): ``geometry_file_path`` (depth, normal), ``albedo_file_path``,
``material_file_path`` (roughness, metallic), ``mask_file_path`` (object ids), ``relit_file_path``;
plus ``scene.json`` (object names, environment maps) beside the transforms files.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from distillcore.serialization import load_arrays, read_json_object
from distill3d.data.cameras import opengl_to_viewmat
from distill3d.data.colorspace import srgb_to_linear
from distill3d.data.environment import check_environment
from distill3d.data.files import read_image
from distill3d.data.scene import Scene

# |R^T R - I| allowed in a transform_matrix (exported poses carry float noise; a zero or scaled block does not pass)
POSE_ORTHONORMAL_TOLERANCE = 1e-3
_EXTRA_KEYS = ("geometry_file_path", "albedo_file_path", "material_file_path", "mask_file_path", "relit_file_path")


def _resolve(root: Path, relative: str) -> Path:
    path = root / relative
    return path if path.suffix else path.with_suffix(".png")


def _unit_range(image: np.ndarray, path: Path) -> np.ndarray:
    """uint8 / uint16 image -> float32 in [0, 1]."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    raise ValueError(f"{path}: expected an 8- or 16-bit image, got dtype {image.dtype}")


def read_rgba(path: Path, background: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Reads an RGB(A) image as float32 ``[H, W, 3]`` composited over ``background`` and its alpha ``[H, W, 1]``
    (None for RGB images). Straight alpha, compositing in the stored (sRGB) values like NeRF-synthetic."""
    image = _unit_range(read_image(path), path)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.shape[-1] == 4:
        alpha = image[..., 3:]
        return image[..., :3] * alpha + background * (1.0 - alpha), alpha
    if image.shape[-1] != 3:
        raise ValueError(f"{path}: expected 1, 3 or 4 channels, got {image.shape[-1]}")
    return image, None


def _intrinsics(meta: dict, width: int, height: int, path: Path) -> np.ndarray:
    if "fl_x" in meta:
        fx = float(meta["fl_x"])
        fy = float(meta.get("fl_y", fx))
    elif "camera_angle_x" in meta:
        for key in ("camera_angle_x", "camera_angle_y"):  # a field of view of 0 or >= 180 degrees is no pinhole
            if key in meta and not 0 < float(meta[key]) < math.pi:
                raise ValueError(f"{path}: {key} must be in (0, pi) radians, got {meta[key]}")
        fx = 0.5 * width / math.tan(0.5 * float(meta["camera_angle_x"]))
        fy = 0.5 * height / math.tan(0.5 * float(meta["camera_angle_y"])) if "camera_angle_y" in meta else fx
    else:
        raise ValueError(f"{path}: needs camera_angle_x or fl_x to define the intrinsics")
    if not (fx > 0 and fy > 0 and math.isfinite(fx) and math.isfinite(fy)):
        raise ValueError(f"{path}: focal lengths must be finite and > 0, got fl_x={fx}, fl_y={fy}")
    cx, cy = float(meta.get("cx", 0.5 * width)), float(meta.get("cy", 0.5 * height))
    for key, size in (("w", width), ("h", height)):
        if key in meta and int(meta[key]) != size:
            raise ValueError(f"{path}: says {key}={meta[key]} but the images are {width} x {height}")
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float32)


def _stack(arrays: list[np.ndarray], what: str) -> torch.Tensor:
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"{what} have different sizes: {sorted(shapes)}")
    return torch.from_numpy(np.stack(arrays))


def _read_buffers(root: Path, frames: list[dict], background: np.ndarray) -> dict[str, torch.Tensor]:
    """The builder's ground-truth buffers, for each kind that every frame lists."""
    present = [key for key in _EXTRA_KEYS if all(key in f for f in frames)]
    out: dict[str, list[np.ndarray]] = {}
    for frame in frames:
        if "geometry_file_path" in present:
            path = _resolve(root, frame["geometry_file_path"])
            if not path.is_file():
                raise FileNotFoundError(f"geometry buffer not found: {path}")
            geometry = load_arrays(path, what="geometry buffer")
            missing = {"depth", "normal"} - set(geometry)
            if missing:
                raise ValueError(f"geometry buffer {path} has no {' / '.join(sorted(missing))} array")
            out.setdefault("depths", []).append(geometry["depth"].astype(np.float32)[..., None])
            out.setdefault("normals", []).append(geometry["normal"].astype(np.float32))
        if "albedo_file_path" in present:
            path = _resolve(root, frame["albedo_file_path"])
            out.setdefault("albedos", []).append(srgb_to_linear(_unit_range(read_image(path), path)[..., :3]))
        if "material_file_path" in present:
            path = _resolve(root, frame["material_file_path"])
            material = _unit_range(read_image(path), path)
            out.setdefault("roughness", []).append(material[..., 0:1])
            out.setdefault("metallic", []).append(material[..., 1:2])
        if "mask_file_path" in present:
            out.setdefault("masks", []).append(read_image(_resolve(root, frame["mask_file_path"])).astype(np.int64))
        if "relit_file_path" in present:
            out.setdefault("relit_images", []).append(read_rgba(_resolve(root, frame["relit_file_path"]), background)[0])
    return {name: _stack(arrays, name) for name, arrays in out.items()}


def load_blender(
    root: str | Path,
    split: str = "train",
    *,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    load_buffers: bool = True,
    min_views: int = 2,
) -> Scene:
    """Reads split ``split`` of a Blender-format scene folder into a ``Scene``.

    Args:
        root: folder holding ``transforms_{split}.json``.
        background: colour transparent pixels are composited over (sRGB, in [0, 1]).
        load_buffers: also read the builder's depth / normal / albedo / material / mask / relit buffers
            and ``scene.json``'s environments and object names, when present.
        min_views: fewer frames than this is an error (training needs several views).
    """
    root = Path(root)
    path = root / f"transforms_{split}.json"
    if not path.is_file():
        found = sorted(p.name for p in root.glob("transforms_*.json")) if root.is_dir() else []
        raise FileNotFoundError(f"no {path.name} in {root} (found: {found or 'none'}); a Blender scene needs "
                                "camera poses in transforms_<split>.json")
    meta = read_json_object(path, what="camera file")
    frames = meta.get("frames") or []
    if len(frames) < min_views:
        raise ValueError(f"{path}: {len(frames)} frame(s); a multi-view scene needs at least {min_views}")
    background_arr = np.asarray(background, dtype=np.float32)
    images, alphas, poses = [], [], []
    for i, frame in enumerate(frames):
        if "file_path" not in frame:
            raise ValueError(f"{path}: frame {i} has no file_path")
        image_path = _resolve(root, frame["file_path"])
        if "transform_matrix" not in frame:
            raise ValueError(f"{path}: frame {i} ({image_path.name}) has no transform_matrix: an image without a pose")
        pose = np.asarray(frame["transform_matrix"], dtype=np.float64)
        if pose.shape != (4, 4) or not np.isfinite(pose).all():
            raise ValueError(f"{path}: frame {i} transform_matrix must be a finite 4 x 4 matrix, got shape {pose.shape}")
        rotation = pose[:3, :3]  # a camera-to-world pose: its rotation block is orthonormal
        if not np.allclose(rotation.T @ rotation, np.eye(3), atol=POSE_ORTHONORMAL_TOLERANCE):
            raise ValueError(f"{path}: frame {i} transform_matrix has a rotation block that is not a rotation "
                             f"(det {np.linalg.det(rotation):.3g}): not a camera pose")
        rgb, alpha = read_rgba(image_path, background_arr)
        images.append(rgb)
        alphas.append(alpha)
        poses.append(pose)
    image_tensor = _stack(images, "images")
    height, width = image_tensor.shape[1:3]
    K = torch.from_numpy(_intrinsics(meta, width, height, path))
    extras: dict = {}
    if all(a is not None for a in alphas):
        extras["alphas"] = _stack(alphas, "alpha channels")
    if load_buffers:
        extras.update(_read_buffers(root, frames, background_arr))
        extras.update(_scene_metadata(root))
    return Scene(
        images=image_tensor,
        Ks=K.expand(len(frames), 3, 3).clone(),
        viewmats=opengl_to_viewmat(torch.from_numpy(np.stack(poses))).float(),
        names=[Path(f["file_path"]).stem for f in frames],
        split=split,
        background=torch.from_numpy(background_arr),
        root=root,
        **extras,
    )


def _scene_metadata(root: Path) -> dict:
    """Object names and environment maps from the builder's ``scene.json``, if there is one."""
    path = root / "scene.json"
    if not path.is_file():
        return {}
    meta = read_json_object(path, what="scene description")
    out: dict = {}
    if "objects" in meta:
        out["object_names"] = [obj["name"] for obj in sorted(meta["objects"], key=lambda o: o["id"])]
    env_path = root / meta.get("environment_file", "environment.npz")
    if env_path.is_file():
        envs = load_arrays(env_path, what="environment file")
        for key, name in (("train", "environment"), ("relight", "relight_environment")):
            if key in envs:
                out[name] = torch.from_numpy(check_environment(envs[key], f"{env_path}[{key}]"))
    return out
