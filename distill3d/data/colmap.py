"""Reader for COLMAP sparse models (``sparse/0``), binary (``*.bin``) or text (``*.txt``).

Formats (COLMAP's ``read_write_model``): cameras (id, model, width, height, params), images (id,
quaternion qw qx qy qz and translation of the world -> camera transform, camera id, name, 2D points),
points3D (id, xyz, rgb, error, track). COLMAP's camera frame is OpenCV's and its pixel centres sit at
+0.5, so ``viewmat = [R(q) t; 0 1]`` and K come over unchanged.

Only undistorted (pinhole) cameras are accepted: SIMPLE_PINHOLE, PINHOLE, and the distortion models
when every distortion coefficient is zero. Run ``colmap image_undistorter`` on anything else.
"""
from __future__ import annotations

import struct
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distill3d.data.blender import read_rgba
from distill3d.data.scene import Scene

# model name -> (model id, number of params, number of leading pinhole params (f.. and c..))
CAMERA_MODELS: dict[str, tuple[int, int, int]] = {
    "SIMPLE_PINHOLE": (0, 3, 3), "PINHOLE": (1, 4, 4), "SIMPLE_RADIAL": (2, 4, 3), "RADIAL": (3, 5, 3),
    "OPENCV": (4, 8, 4), "OPENCV_FISHEYE": (5, 8, 4), "FULL_OPENCV": (6, 12, 4), "FOV": (7, 5, 4),
    "SIMPLE_RADIAL_FISHEYE": (8, 4, 3), "RADIAL_FISHEYE": (9, 5, 3), "THIN_PRISM_FISHEYE": (10, 12, 4),
}
_MODEL_BY_ID = {model_id: name for name, (model_id, _, _) in CAMERA_MODELS.items()}
# models whose zero-coefficient case is an ideal pinhole (fisheye and FOV models are not, even at zero)
_PINHOLE_WHEN_UNDISTORTED = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV")


@dataclass
class ColmapCamera:
    id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # float64 [num_params]

    def intrinsics(self) -> np.ndarray:
        """Pinhole K ``[3, 3]``; ValueError for a distorted or non-pinhole camera."""
        _, _, num_pinhole = CAMERA_MODELS[self.model]
        distortion = self.params[num_pinhole:]
        if self.model not in _PINHOLE_WHEN_UNDISTORTED or np.any(distortion != 0):
            raise ValueError(
                f"COLMAP camera {self.id} uses model {self.model} with distortion {distortion.tolist()}: only pinhole "
                "cameras are supported; undistort the images first (colmap image_undistorter writes PINHOLE cameras)"
            )
        if num_pinhole == 3:
            fx = fy = self.params[0]
            cx, cy = self.params[1:3]
        else:
            fx, fy, cx, cy = self.params[:4]
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


@dataclass
class ColmapImage:
    id: int
    qvec: np.ndarray  # [4] (w, x, y, z), world -> camera rotation
    tvec: np.ndarray  # [3] world -> camera translation
    camera_id: int
    name: str

    def viewmat(self) -> np.ndarray:
        """World -> camera ``[4, 4]`` (OpenCV)."""
        norm = np.linalg.norm(self.qvec)
        if not np.isfinite(norm) or norm < 1e-12:
            raise ValueError(f"image {self.name!r} has quaternion {self.qvec.tolist()}, which is no rotation")
        w, x, y, z = self.qvec / norm
        rot = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ])
        out = np.eye(4)
        out[:3, :3], out[:3, 3] = rot, self.tvec
        return out


@dataclass
class ColmapPoints:
    ids: np.ndarray  # int64 [P]
    xyz: np.ndarray  # float64 [P, 3]
    rgb: np.ndarray  # uint8 [P, 3]
    error: np.ndarray  # float64 [P]


@dataclass
class ColmapModel:
    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points: ColmapPoints


# ---- binary -----------------------------------------------------------------------------------------
class _Reader:
    def __init__(self, path: Path):
        self.data = path.read_bytes()
        self.path = path
        self.pos = 0

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise ValueError(f"{self.path}: truncated COLMAP binary file")
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values

    def read_name(self) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise ValueError(f"{self.path}: truncated COLMAP binary file (unterminated image name)")
        name = self.data[self.pos:end].decode("utf-8")
        self.pos = end + 1
        return name


def _camera(camera_id: int, model: str, width: int, height: int, params, path: Path) -> ColmapCamera:
    if model not in CAMERA_MODELS:
        raise ValueError(f"{path}: unknown COLMAP camera model {model!r}")
    params = np.asarray(params, dtype=np.float64)
    if params.shape[0] != CAMERA_MODELS[model][1]:
        raise ValueError(f"{path}: camera {camera_id} model {model} needs {CAMERA_MODELS[model][1]} params, got {params.shape[0]}")
    return ColmapCamera(camera_id, model, int(width), int(height), params)


def read_cameras_binary(path: Path) -> dict[int, ColmapCamera]:
    r = _Reader(path)
    cameras = {}
    for _ in range(r.read("Q")[0]):
        camera_id, model_id, width, height = r.read("iiQQ")
        if model_id not in _MODEL_BY_ID:
            raise ValueError(f"{path}: unknown COLMAP camera model id {model_id}")
        model = _MODEL_BY_ID[model_id]
        cameras[camera_id] = _camera(camera_id, model, width, height, r.read("d" * CAMERA_MODELS[model][1]), path)
    return cameras


def read_images_binary(path: Path) -> dict[int, ColmapImage]:
    r = _Reader(path)
    images = {}
    for _ in range(r.read("Q")[0]):
        image_id, qw, qx, qy, qz, tx, ty, tz, camera_id = r.read("idddddddi")
        name = r.read_name()
        num_points2d = r.read("Q")[0]
        r.pos += num_points2d * struct.calcsize("<ddq")  # 2D observations: not needed here
        images[image_id] = ColmapImage(image_id, np.array([qw, qx, qy, qz]), np.array([tx, ty, tz]), camera_id, name)
    return images


def read_points3d_binary(path: Path) -> ColmapPoints:
    r = _Reader(path)
    ids, xyz, rgb, err = [], [], [], []
    for _ in range(r.read("Q")[0]):
        values = r.read("QdddBBBd")
        ids.append(values[0])
        xyz.append(values[1:4])
        rgb.append(values[4:7])
        err.append(values[7])
        track_length = r.read("Q")[0]
        r.pos += track_length * struct.calcsize("<ii")
    return _points(ids, xyz, rgb, err)


# ---- text -------------------------------------------------------------------------------------------
def _content_lines(path: Path) -> list[tuple[int, str]]:
    """``(1-based line number, line)`` of the file's lines without comments (blank lines kept: an
    image's 2D-point line may be empty); the numbers let every parse error name its line."""
    return [(n, line.strip()) for n, line in enumerate(path.read_text().splitlines(), 1)
            if not line.lstrip().startswith("#")]


@contextmanager
def _at_line(path: Path, lineno: int, line: str, minimum: int, what: str):
    """Yields the line's fields; a short line or an unparsable number is one ValueError naming file and line."""
    tok = line.split()
    if len(tok) < minimum:
        raise ValueError(f"{path}:{lineno}: a COLMAP {what} line needs at least {minimum} fields, got {len(tok)}: {line!r}")
    try:
        yield tok
    except (ValueError, IndexError) as err:
        raise ValueError(f"{path}:{lineno}: malformed COLMAP {what} line {line!r} ({err})") from None


def read_cameras_text(path: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    for lineno, line in _content_lines(path):
        if line:
            with _at_line(path, lineno, line, 4, "camera") as tok:
                cameras[int(tok[0])] = _camera(int(tok[0]), tok[1], int(tok[2]), int(tok[3]), [float(v) for v in tok[4:]], path)
    return cameras


def read_images_text(path: Path) -> dict[int, ColmapImage]:
    lines = _content_lines(path)
    while lines and not lines[-1][1]:
        lines.pop()
    images = {}
    i = 0
    while i < len(lines):
        lineno, line = lines[i]
        if not line:  # stray blank line between entries
            i += 1
            continue
        with _at_line(path, lineno, line, 10, "image") as tok:
            image_id = int(tok[0])
            values = [float(v) for v in tok[1:8]]
            images[image_id] = ColmapImage(image_id, np.array(values[:4]), np.array(values[4:7]), int(tok[8]), " ".join(tok[9:]))
        i += 2  # skip the image's 2D-point line
    return images


def read_points3d_text(path: Path) -> ColmapPoints:
    ids, xyz, rgb, err = [], [], [], []
    for lineno, line in _content_lines(path):
        if line:
            with _at_line(path, lineno, line, 8, "points3D") as tok:
                ids.append(int(tok[0]))
                xyz.append([float(v) for v in tok[1:4]])
                rgb.append([int(v) for v in tok[4:7]])
                err.append(float(tok[7]))
    return _points(ids, xyz, rgb, err)


def _points(ids, xyz, rgb, err) -> ColmapPoints:
    return ColmapPoints(np.asarray(ids, np.int64), np.asarray(xyz, np.float64).reshape(-1, 3),
                        np.asarray(rgb, np.uint8).reshape(-1, 3), np.asarray(err, np.float64))


def read_colmap_model(sparse_dir: str | Path) -> ColmapModel:
    """Reads ``cameras``, ``images`` and ``points3D`` from ``sparse_dir`` (binary if present, else text)."""
    sparse_dir = Path(sparse_dir)
    for ext, readers in ((".bin", (read_cameras_binary, read_images_binary, read_points3d_binary)),
                         (".txt", (read_cameras_text, read_images_text, read_points3d_text))):
        paths = [sparse_dir / f"{name}{ext}" for name in ("cameras", "images", "points3D")]
        if all(p.is_file() for p in paths):
            return ColmapModel(*(read(p) for read, p in zip(readers, paths)))
    raise FileNotFoundError(f"no COLMAP model in {sparse_dir}: expected cameras, images and points3D as .bin or .txt")


# the 3DGS / Mip-NeRF 360 convention for photos reduced ahead of time: ``images_2``, ``images_4``, ``images_8``
DOWNSAMPLED_FOLDER = "images_{factor}"


def colmap_image_folder(root: str | Path, images: str | None = None, downsample: int = 1) -> tuple[str, int]:
    """The image folder to read and the downsampling factor still to apply after reading it.

    An explicit ``images`` folder is read as it is and ``downsample`` applies on top of it. Otherwise
    ``images_<downsample>`` is read when it exists (its photos are already reduced, so nothing is left
    to apply), else ``images`` with the whole factor left. ``load_colmap`` scales K to whatever size
    the photos of the chosen folder have.

    Args:
        root: the COLMAP scene folder.
        images: a folder name under ``root`` (``images``, ``images_4``, ...), or None to choose.
        downsample: the wanted reduction of the full-resolution photos (>= 1).
    """
    root = Path(root)
    if downsample < 1:
        raise ValueError(f"downsample must be >= 1, got {downsample}")
    if images is not None:
        if not (root / images).is_dir():
            found = sorted(p.name for p in root.glob("images*") if p.is_dir())
            raise FileNotFoundError(f"image folder {images!r} not found in {root} (found: {found or 'none'})")
        return images, downsample
    reduced = DOWNSAMPLED_FOLDER.format(factor=downsample)
    if downsample > 1 and (root / reduced).is_dir():
        return reduced, 1
    return "images", downsample


def load_colmap(
    root: str | Path,
    split: str = "train",
    *,
    images_dir: str = "images",
    sparse_dir: str = "sparse/0",
    test_every: int = 8,
    skip_unposed: bool = False,
    min_views: int = 2,
) -> Scene:
    """Reads a COLMAP scene folder (``root/images``, ``root/sparse/0``) into a ``Scene``.

    Images are sorted by name; split "test" holds every ``test_every``-th (index % test_every == 0, as
    3DGS's LLFF hold-out), "train" the rest, "all" every image (``test_every=0`` puts all in "train").
    Images smaller than their camera (``images_2`` ...) scale K accordingly.

    Args:
        skip_unposed: ignore image files that COLMAP did not register, instead of raising.
        min_views: fewer views than this in the split is an error.
    """
    root = Path(root)
    model = read_colmap_model(root / sparse_dir)
    image_root = root / images_dir
    if not image_root.is_dir():
        raise FileNotFoundError(f"image folder not found: {image_root}")
    posed = sorted(model.images.values(), key=lambda im: im.name)
    for im in posed:  # a crafted model must not make us read files outside the image folder
        if Path(im.name).is_absolute() or not (image_root / im.name).resolve().is_relative_to(image_root.resolve()):
            raise ValueError(f"image name {im.name!r} in {root / sparse_dir} points outside {image_root}: refused")
    posed_names = {im.name for im in posed}
    on_disk = {p.relative_to(image_root).as_posix() for p in image_root.rglob("*")
               if p.suffix.lower() in (".png", ".jpg", ".jpeg")}
    unposed = sorted(on_disk - posed_names)
    if unposed and not skip_unposed:
        raise ValueError(f"{len(unposed)} image(s) in {image_root} have no pose in {root / sparse_dir} "
                         f"(e.g. {unposed[:5]}); pass skip_unposed=True to ignore them")
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if split != "all":
        is_test = [test_every > 0 and i % test_every == 0 for i in range(len(posed))]
        posed = [im for im, t in zip(posed, is_test) if t == (split == "test")]
    if len(posed) < min_views:
        raise ValueError(f"COLMAP scene {root} split {split!r} has {len(posed)} posed view(s); need at least {min_views}")
    images, Ks, viewmats = [], [], []
    for im in posed:
        if im.camera_id not in model.cameras:
            raise ValueError(f"image {im.name} refers to camera {im.camera_id}, which the model does not have")
        camera = model.cameras[im.camera_id]
        rgb, _ = read_rgba(image_root / im.name, np.zeros(3, np.float32))
        height, width = rgb.shape[:2]
        K = camera.intrinsics()
        sx, sy = width / camera.width, height / camera.height
        if abs(sx - sy) > 2.0 / min(camera.width, camera.height):
            raise ValueError(f"image {im.name} is {width} x {height} but its camera is {camera.width} x {camera.height}: "
                             "the aspect ratio differs")
        K[0] *= sx
        K[1] *= sy
        images.append(rgb)
        Ks.append(K)
        viewmats.append(im.viewmat())
    if len({im.shape for im in images}) > 1:
        raise ValueError(f"images of {root} differ in size: {sorted({im.shape for im in images})}")
    return Scene(
        images=torch.from_numpy(np.stack(images)),
        Ks=torch.from_numpy(np.stack(Ks)).float(),
        viewmats=torch.from_numpy(np.stack(viewmats)).float(),
        names=[im.name for im in posed],
        split=split,
        points=torch.from_numpy(model.points.xyz).float(),
        point_colors=torch.from_numpy(model.points.rgb.astype(np.float32) / 255.0),
        root=root,
    )
