"""Renders a ``SceneRecipe`` with mitsuba 3 (``scalar_rgb``, CPU) into a Blender-style scene folder.

Per view, two passes share one camera:

1. geometry: the ``aov`` integrator (position, shading normal, albedo, shape index) with ONE sample at
   each pixel centre (stratified sampler, no jitter, box filter), so depth, normals, albedo and object
   ids are exact point samples at the pixel centres the rasterizer uses (no averaged ids at edges);
2. beauty: the ``path`` integrator at ``spp`` samples with the environment hidden from the camera
   (``hide_emitters``), on an RGBA film: alpha is the pixel's object coverage.

Test views get a third pass under the second ("relight") environment. Output layout (``out/``)::

    transforms_train.json, transforms_test.json   Blender form (OpenGL camera-to-world), extra paths
    train/r_000.png            RGBA, sRGB-encoded colour with straight (un-premultiplied) alpha
    train/r_000_albedo.png     base colour, linear values sRGB-encoded (like a texture)
    train/r_000_material.png   R = roughness, G = metallic (linear, x 255), B = 0
    train/r_000_mask.png       uint8 object id (0 = background, 1 = table, 2.. = recipe objects)
    train/r_000_geometry.npz   depth [H, W] float32 z-depth (OpenCV, 0 = no surface),
                               normal [H, W, 3] float16 world-space, facing the camera
    test/r_000_relit.png       RGBA under the relight environment (test views only)
    train/r_000_direct.npz     with ``render.direct_pass``: radiance [H, W, 3] float16, linear, unclipped,
                               straight alpha, direct light only (one bounce: shadows, no inter-reflection)
    environment.npz            train / relight environments [He, We, 3] float32 (see environment.py)
    scene.json                 recipe, object table, conventions, build time

Colour: the renderer's linear radiance is clipped to [0, 1] and sRGB-encoded (``colorspace``).
Each file is written atomically, and a view whose files all exist is skipped: an interrupted build
resumes where it stopped (``overwrite=True`` re-renders everything).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from distillcore.extras import require_extra
from distillcore.serialization import write_json_atomic

from distill3d.data.cameras import intrinsics_from_fov, look_at_opengl, opengl_to_viewmat
from distill3d.data.colorspace import linear_to_srgb
from distill3d.data.environment import synthesize_environment
from distill3d.data.files import to_uint8, write_npz, write_png
from distill3d.data.meshes import resolve_mesh
from distill3d.data.mitsuba_setup import ensure_variant
from distill3d.data.recipes import CameraRig, MaterialSpec, ObjectSpec, SceneRecipe, SurroundSpec

BACKGROUND_ID = 0
TABLE_ID = 1
SPLITS = ("train", "test")
# mitsuba cameras look along +z with +x to the left: c2w_mitsuba = c2w_opengl @ diag(-1, 1, -1, 1).
_GL_TO_MITSUBA = np.diag([-1.0, 1.0, -1.0, 1.0])
# rotates a y-up mesh onto the world's z-up (rotation of +90 degrees about x maps +y to +z).
_UP_AXIS_ROTATION_DEG = {"y": 90.0, "z": 0.0}
_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def camera_poses(rig: CameraRig) -> tuple[torch.Tensor, list[str]]:
    """OpenGL camera-to-world poses ``[V, 4, 4]`` (float64) of the rig and each view's split name.

    View k of V: azimuth ``k * golden_angle``, elevation ``lerp(e0, e1, (k + 0.5) / V)``; the test views
    are ``num_test`` evenly spaced k.
    """
    num_views = rig.num_train + rig.num_test
    if rig.num_train < 1 or rig.num_test < 0:
        raise ValueError(f"camera rig needs num_train >= 1 and num_test >= 0, got {rig.num_train}, {rig.num_test}")
    k = torch.arange(num_views, dtype=torch.float64)
    e0, e1 = (math.radians(e) for e in rig.elevation_deg)
    elevation = e0 + (e1 - e0) * (k + 0.5) / num_views
    azimuth = k * _GOLDEN_ANGLE
    target = torch.tensor(rig.target, dtype=torch.float64)
    eyes = target + rig.radius * torch.stack(
        [torch.cos(elevation) * torch.cos(azimuth), torch.cos(elevation) * torch.sin(azimuth), torch.sin(elevation)], -1
    )
    c2w = look_at_opengl(eyes, target, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    test = {int((j + 0.5) * num_views / rig.num_test) for j in range(rig.num_test)} if rig.num_test else set()
    return c2w, ["test" if i in test else "train" for i in range(num_views)]


def _rgb(value) -> dict:
    return {"type": "rgb", "value": list(value)}


def _bsdf(material: MaterialSpec, texture: Path | None) -> dict:
    mi = ensure_variant()
    if material.use_mesh_texture:
        if texture is None:
            raise ValueError("material asks for the mesh's texture but the mesh has none")
        base = {"type": "bitmap", "filename": str(texture)}
    elif material.checker_color is not None:
        # mitsuba's checkerboard has 2 squares per unit of uv; the cube face spans uv [0, 1].
        base = {
            "type": "checkerboard",
            "color0": _rgb(material.base_color),
            "color1": _rgb(material.checker_color),
            "to_uv": mi.ScalarTransform3f().scale([material.checker_tiles / 2.0] * 2),
        }
    else:
        base = _rgb(material.base_color)
    if material.lambertian:
        return {"type": "diffuse", "reflectance": base}
    return {
        "type": "principled",
        "base_color": base,
        "roughness": material.roughness,
        "metallic": material.metallic,
        "specular": material.specular,
    }


def _object_shape(spec: ObjectSpec) -> dict:
    """mitsuba shape dict of an object, normalised by its bounds and standing on z = 0 at ``position``."""
    mi = ensure_variant()
    T = mi.ScalarTransform4f
    px, py = spec.position
    if spec.mesh == "sphere":
        return {"type": "sphere", "center": [px, py, spec.size / 2], "radius": spec.size / 2, "bsdf": _bsdf(spec.material, None)}
    if spec.mesh == "cube":
        to_world = T().translate([px, py, spec.size / 2]) @ T().rotate([0, 0, 1], spec.yaw_deg) @ T().scale(spec.size / 2)
        return {"type": "cube", "to_world": to_world, "bsdf": _bsdf(spec.material, None)}
    path, asset = resolve_mesh(spec.mesh)
    if asset.up_axis not in _UP_AXIS_ROTATION_DEG:
        raise ValueError(f"mesh {spec.mesh!r}: up_axis must be 'y' or 'z', got {asset.up_axis!r}")
    rotation = T().rotate([0, 0, 1], spec.yaw_deg) @ T().rotate([1, 0, 0], _UP_AXIS_ROTATION_DEG[asset.up_axis])
    kind = "ply" if path.suffix.lower() == ".ply" else "obj"
    bbox = mi.load_dict({"type": kind, "filename": str(path), "to_world": rotation}).bbox()
    lo, hi = np.array(bbox.min), np.array(bbox.max)
    scale = spec.size / float((hi - lo).max())
    centre = 0.5 * (lo + hi)
    to_world = T().translate([px - scale * centre[0], py - scale * centre[1], -scale * lo[2]]) @ T().scale(scale) @ rotation
    texture = path.parent / asset.texture if asset.texture else None
    return {"type": kind, "filename": str(path), "to_world": to_world, "bsdf": _bsdf(spec.material, texture)}


def _surround_shapes(surround: SurroundSpec, ground_z: float) -> dict[str, dict]:
    """mitsuba rectangles (``[-1, 1]^2`` in the xy plane, normal +z) of the ground and the walls, each
    wall turned to face the origin: rotate x by 90 degrees (normal -y = -(cos 90, sin 90)), then z by
    ``azimuth - 90``."""
    mi = ensure_variant()
    T = mi.ScalarTransform4f
    r = surround.ground_half_extent
    shapes = {"ground": {"type": "rectangle", "to_world": T().translate([0, 0, ground_z]) @ T().scale([r, r, 1]),
                         "bsdf": _bsdf(surround.ground_material, None)}}
    half_height = surround.wall_height / 2
    for k, azimuth in enumerate(surround.wall_azimuths_deg):
        a = math.radians(azimuth)
        centre = [surround.wall_distance * math.cos(a), surround.wall_distance * math.sin(a), ground_z + half_height]
        to_world = (T().translate(centre) @ T().rotate([0, 0, 1], azimuth - 90.0) @ T().rotate([1, 0, 0], 90.0)
                    @ T().scale([surround.wall_half_width, half_height, 1]))
        shapes[f"wall_{k}"] = {"type": "rectangle", "to_world": to_world, "bsdf": _bsdf(surround.wall_material, None)}
    return shapes


def mitsuba_scene_dict(recipe: SceneRecipe, environment: np.ndarray) -> dict:
    """The recipe's shapes, materials and light as the mitsuba scene dictionary the builder renders
    (``mi.load_dict`` it in the ``scalar_rgb`` variant, ``mitsuba_setup.ensure_variant``): for tracing rays
    on the true shapes (``ray_test``, ``ray_intersect``).

    Args:
        recipe: the scene recipe (``distill3d.data.recipes``).
        environment: the light, a linear HDR equirectangular map (y-up, as ``environment.npz`` stores it).

    Shapes:
        environment ``[He, We, 3]`` float32.
    """
    mi = ensure_variant()
    T = mi.ScalarTransform4f
    hx, hy = recipe.table.half_extent
    h = recipe.table.thickness / 2
    scene = {
        "type": "scene",
        "table": {
            "type": "cube",
            "to_world": T().translate([0, 0, -h]) @ T().scale([hx, hy, h]),
            "bsdf": _bsdf(recipe.table.material, None),
        },
        # the environment's bitmap is y-up; rotating it by 90 degrees about x makes it z-up.
        "environment": {"type": "envmap", "bitmap": mi.Bitmap(environment), "to_world": T().rotate([1, 0, 0], 90)},
    }
    for spec in recipe.objects:
        if spec.name in scene or spec.name in ("background", "table"):
            raise ValueError(f"object name {spec.name!r} is reserved or used twice")
        scene[spec.name] = _object_shape(spec)
    if recipe.surround is not None:
        scene.update(_surround_shapes(recipe.surround, -recipe.table.thickness))
    return scene


def _surround_rows(surround: SurroundSpec | None) -> list[tuple[str, MaterialSpec]]:
    if surround is None:
        return []
    walls = [(f"wall_{k}", surround.wall_material) for k in range(len(surround.wall_azimuths_deg))]
    return [("ground", surround.ground_material)] + walls


def object_table(recipe: SceneRecipe) -> list[dict]:
    """Object id -> name and material: 0 background, 1 table, then the recipe's objects in order."""
    rows = [
        {"id": BACKGROUND_ID, "name": "background"},
        {"id": TABLE_ID, "name": "table", "mesh": "box", "material": dataclasses.asdict(recipe.table.material)},
    ]
    for i, spec in enumerate(recipe.objects):
        rows.append({"id": TABLE_ID + 1 + i, "name": spec.name, "mesh": spec.mesh,
                     "material": dataclasses.asdict(spec.material)})
    for name, material in _surround_rows(recipe.surround):  # after the objects: their ids stay as without
        rows.append({"id": len(rows), "name": name, "mesh": "rectangle", "material": dataclasses.asdict(material)})
    return rows


class _Renderer:
    """The loaded mitsuba scenes (train and relight light), integrators and the shape -> object lookup."""

    def __init__(self, recipe: SceneRecipe, environments: dict[str, np.ndarray]):
        mi = ensure_variant()
        self.recipe = recipe
        # optimize=False: mitsuba would merge shapes of equal materials (two walls) into one, losing their ids
        self.scenes = {name: mi.load_dict(mitsuba_scene_dict(recipe, env), optimize=False)
                       for name, env in environments.items()}
        settings = recipe.render
        self.geometry_integrator = mi.load_dict({"type": "aov", "aovs": "pos:position,nn:sh_normal,alb:albedo,id:shape_index"})
        self.path_integrator = mi.load_dict({"type": "path", "max_depth": settings.max_depth,
                                             "hide_emitters": not settings.show_environment})
        self.direct_integrator = mi.load_dict({"type": "path", "max_depth": 2,
                                               "hide_emitters": not settings.show_environment})
        # the aov shape_index is 1 + the shape's position in scene.shapes(), 0 where nothing is hit.
        ids = {row["name"]: row["id"] for row in object_table(recipe)}
        shapes = self.scenes["train"].shapes()
        self.shape_to_object = np.zeros(len(shapes) + 1, dtype=np.int64)
        for i, shape in enumerate(shapes):
            self.shape_to_object[i + 1] = ids[shape.id()]
        materials = ([recipe.table.material] + [spec.material for spec in recipe.objects]
                     + [material for _, material in _surround_rows(recipe.surround)])
        self.roughness = np.array([0.0] + [m.roughness for m in materials], dtype=np.float32)
        self.metallic = np.array([0.0] + [m.metallic for m in materials], dtype=np.float32)

    def _sensor(self, c2w_opengl: np.ndarray, sampler: dict, pixel_format: str):
        mi = ensure_variant()
        settings = self.recipe.render
        return mi.load_dict({
            "type": "perspective",
            "fov": self.recipe.cameras.fov_x_deg,
            "fov_axis": "x",
            "to_world": mi.ScalarTransform4f((c2w_opengl @ _GL_TO_MITSUBA).tolist()),
            "film": {"type": "hdrfilm", "width": settings.width, "height": settings.height,
                     "pixel_format": pixel_format, "rfilter": {"type": "box"}},
            "sampler": sampler,
        })

    def geometry(self, c2w_opengl: np.ndarray, viewmat: np.ndarray) -> dict[str, np.ndarray]:
        mi = ensure_variant()
        sensor = self._sensor(c2w_opengl, {"type": "stratified", "sample_count": 1, "jitter": False}, "rgb")
        aov = np.array(mi.render(self.scenes["train"], sensor=sensor, integrator=self.geometry_integrator))
        position, normal, albedo = aov[..., 0:3], aov[..., 3:6], aov[..., 6:9]
        ids = self.shape_to_object[np.rint(aov[..., 9]).astype(np.int64)]
        hit = ids != BACKGROUND_ID
        depth = np.where(hit, position @ viewmat[2, :3] + viewmat[2, 3], 0.0)
        # shading normals of meshes may point away from the viewer; flip them to face the camera
        facing = np.sum(normal * (c2w_opengl[:3, 3] - position), axis=-1, keepdims=True)
        normal = np.where(facing < 0, -normal, normal) * hit[..., None]
        return {"depth": depth.astype(np.float32), "normal": normal.astype(np.float16),
                "albedo": albedo * hit[..., None], "ids": ids.astype(np.uint8)}

    def _render(self, c2w_opengl: np.ndarray, light: str, seed: int, integrator) -> np.ndarray:
        """Linear RGBA film ``[H, W, 4]`` (colour premultiplied by coverage) of ``integrator``."""
        mi = ensure_variant()
        sampler = {"type": self.recipe.render.sampler, "sample_count": self.recipe.render.spp}
        sensor = self._sensor(c2w_opengl, sampler, "rgba")
        return np.array(mi.render(self.scenes[light], sensor=sensor, integrator=integrator, seed=seed))

    def direct(self, c2w_opengl: np.ndarray, seed: int) -> np.ndarray:
        """Linear radiance ``[H, W, 3]`` under the training light with direct lighting only (``path`` with
        max_depth 2: one bounce, shadows included), straight alpha, unclipped."""
        rgba = self._render(c2w_opengl, "train", seed, self.direct_integrator)
        alpha = rgba[..., 3:4]
        return np.where(alpha > 0, rgba[..., :3] / np.maximum(alpha, 1e-8), 0.0).astype(np.float32)

    def beauty(self, c2w_opengl: np.ndarray, light: str, seed: int) -> np.ndarray:
        """RGBA ``[H, W, 4]``: straight-alpha sRGB colour in [0, 1] and coverage alpha; with the
        environment shown, RGB ``[H, W, 3]`` (every pixel sees something, as in a photo)."""
        rgba = self._render(c2w_opengl, light, seed, self.path_integrator)
        if self.recipe.render.show_environment:
            return linear_to_srgb(rgba[..., :3])
        alpha = rgba[..., 3:4]
        # missed samples add zero radiance, so the film's colour is premultiplied by coverage
        straight = np.where(alpha > 0, rgba[..., :3] / np.maximum(alpha, 1e-8), 0.0)
        return np.concatenate([linear_to_srgb(straight), np.clip(alpha, 0.0, 1.0)], axis=-1)


def _view_files(split: str, index: int, direct: bool = False) -> dict[str, str]:
    stem = f"{split}/r_{index:03d}"
    files = {
        "file_path": f"./{stem}",
        "albedo_file_path": f"./{stem}_albedo.png",
        "material_file_path": f"./{stem}_material.png",
        "mask_file_path": f"./{stem}_mask.png",
        "geometry_file_path": f"./{stem}_geometry.npz",
    }
    if split == "test":
        files["relit_file_path"] = f"./{stem}_relit.png"
    if direct:
        files["direct_file_path"] = f"./{stem}_direct.npz"
    return files


def _file(out: Path, relative: str) -> Path:
    path = out / relative
    return path.with_suffix(".png") if path.suffix == "" else path


def _scene_json(recipe: SceneRecipe, build_seconds: float | None = None) -> dict:
    """Contents of ``scene.json``: object table, conventions, the recipe (compared on resume), build time."""
    return {
        "name": recipe.name,
        "description": recipe.description,
        "objects": object_table(recipe),
        "environment_file": "environment.npz",
        "conventions": {
            "world": "z up; the table top is the plane z = 0",
            "transform_matrix": "OpenGL camera-to-world (Blender): x right, y up, z backward",
            "rgb": ("RGB PNG, linear radiance clipped to [0, 1] then sRGB-encoded; the environment is seen "
                    "behind the objects (no alpha, like a photo)" if recipe.render.show_environment else
                    "RGBA PNG, linear radiance clipped to [0, 1] then sRGB-encoded, straight alpha; "
                    "the environment is hidden from the camera (alpha 0 where no object)"),
            "albedo": "linear base colour, sRGB-encoded in the PNG",
            "material": "R = roughness, G = metallic, linear, scaled by 255",
            "mask": "uint8 object id, see objects",
            "depth": "float32 z-depth along the optical axis (OpenCV camera z); 0 where no surface",
            "normal": "float16 world-space unit shading normal, flipped to face the camera; 0 where no surface",
            "geometry_sampling": "depth, normal, albedo, material, mask: one sample at each pixel centre",
            "environment": "equirectangular [H, W, 3] float32 linear radiance, row r / column c looks along "
                           "theta = pi r / (H - 1) from +z, phi = 2 pi (c + 0.5) / W, "
                           "d = (sin theta sin phi, sin theta cos phi, cos theta)",
        },
        "recipe": json.loads(json.dumps(dataclasses.asdict(recipe))),  # tuples as JSON lists
        "build_seconds": build_seconds,
    }


def build_scene(recipe: SceneRecipe, out_dir: str | Path, *, overwrite: bool = False, progress: bool = True) -> Path:
    """Renders ``recipe`` into ``out_dir`` (layout in the module docstring) and returns the folder."""
    for module in ("mitsuba", "pybullet_data"):  # before any output: a missing extra is one clear error
        require_extra(module, "scenes")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    previous = out / "scene.json"
    if previous.is_file() and not overwrite:
        if json.loads(previous.read_text()).get("recipe") != _scene_json(recipe)["recipe"]:
            raise ValueError(f"{out} holds a scene built from a different recipe: pass overwrite=True "
                             "(--overwrite) or choose another output folder")
    write_json_atomic(previous, _scene_json(recipe))  # marks the folder's recipe for a resumed build
    environments = {"train": synthesize_environment(recipe.environment),
                    "relight": synthesize_environment(recipe.relight_environment)}
    renderer = _Renderer(recipe, environments)
    c2w_all, splits = camera_poses(recipe.cameras)
    viewmats = opengl_to_viewmat(c2w_all).numpy()
    c2w_all = c2w_all.numpy()
    settings = recipe.render
    frames: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for view in tqdm(range(len(splits)), desc=f"rendering {recipe.name}", disable=not progress, unit="view"):
        split = splits[view]
        files = _view_files(split, len(frames[split]), settings.direct_pass)
        frames[split].append({**files, "transform_matrix": c2w_all[view].tolist()})
        if not overwrite and all(_file(out, f).is_file() for f in files.values()):
            continue
        geo = renderer.geometry(c2w_all[view], viewmats[view])
        ids = geo["ids"]
        material = np.stack([renderer.roughness[ids], renderer.metallic[ids], np.zeros_like(renderer.roughness[ids])], -1)
        write_npz(_file(out, files["geometry_file_path"]), depth=geo["depth"], normal=geo["normal"])
        write_png(_file(out, files["albedo_file_path"]), to_uint8(linear_to_srgb(geo["albedo"])))
        write_png(_file(out, files["material_file_path"]), to_uint8(material))
        write_png(_file(out, files["mask_file_path"]), ids)
        if settings.direct_pass:  # the beauty pass's seed: correlated noise in full - direct
            write_npz(_file(out, files["direct_file_path"]), radiance=renderer.direct(c2w_all[view], 2 * view).astype(np.float16))
        if split == "test":
            write_png(_file(out, files["relit_file_path"]), to_uint8(renderer.beauty(c2w_all[view], "relight", 2 * view + 1)))
        # the RGB image last: its presence marks the view done
        write_png(_file(out, files["file_path"]), to_uint8(renderer.beauty(c2w_all[view], "train", 2 * view)))
    K = intrinsics_from_fov(math.radians(recipe.cameras.fov_x_deg), settings.width, settings.height)
    camera = {"camera_angle_x": math.radians(recipe.cameras.fov_x_deg), "w": settings.width, "h": settings.height,
              "fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2])}
    for split in SPLITS:
        write_json_atomic(out / f"transforms_{split}.json", {**camera, "frames": frames[split]})
    write_npz(out / "environment.npz", **environments)
    write_json_atomic(out / "scene.json", _scene_json(recipe, build_seconds=round(time.perf_counter() - start, 1)))
    return out
