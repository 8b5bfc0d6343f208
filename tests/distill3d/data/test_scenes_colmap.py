"""COLMAP reader: a tiny hand-written model in binary and text form parses identically; Scene loading."""
import struct

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from distill3d.data import load_colmap, load_scene, read_colmap_model
from distill3d.data.cameras import project_points

# (id, model, model id, width, height, params)
CAMERAS = [
    (1, "PINHOLE", 1, 16, 12, [20.0, 21.0, 8.0, 6.0]),
    (2, "SIMPLE_PINHOLE", 0, 16, 12, [19.0, 7.5, 6.5]),
    (3, "OPENCV", 4, 16, 12, [18.0, 18.5, 8.2, 5.9, 0.0, 0.0, 0.0, 0.0]),
]
ROTATIONS = Rotation.from_euler("xyz", [[10, 20, 30], [-5, 40, 0], [0, -30, 15], [25, 5, -10]], degrees=True)
# (id, qvec (w, x, y, z), tvec, camera id, name, 2D points)
IMAGES = [
    (i + 1, np.roll(ROTATIONS[i].as_quat(), 1), np.array([0.1 * i, -0.2, 3.0 + i]), cam, f"img_{i}.png",
     [(1.5, 2.5, 1), (3.0, 4.0, -1)] if i != 1 else [])
    for i, cam in enumerate([1, 2, 3, 1])
]
# (id, xyz, rgb, error, track of (image id, point2D index))
POINTS = [(1, [0.1, 0.2, 0.3], [255, 0, 10], 0.5, [(1, 0), (3, 0)]), (7, [-1.0, 0.5, 2.0], [1, 2, 3], 1.25, [(4, 0)])]


def write_binary(sparse):
    with open(sparse / "cameras.bin", "wb") as f:
        f.write(struct.pack("<Q", len(CAMERAS)))
        for cid, _, model_id, w, h, params in CAMERAS:
            f.write(struct.pack("<iiQQ", cid, model_id, w, h) + struct.pack(f"<{len(params)}d", *params))
    with open(sparse / "images.bin", "wb") as f:
        f.write(struct.pack("<Q", len(IMAGES)))
        for iid, q, t, cid, name, pts in IMAGES:
            f.write(struct.pack("<i7di", iid, *q, *t, cid) + name.encode() + b"\x00" + struct.pack("<Q", len(pts)))
            for x, y, pid in pts:
                f.write(struct.pack("<ddq", x, y, pid))
    with open(sparse / "points3D.bin", "wb") as f:
        f.write(struct.pack("<Q", len(POINTS)))
        for pid, xyz, rgb, err, track in POINTS:
            f.write(struct.pack("<Q3d3Bd", pid, *xyz, *rgb, err) + struct.pack("<Q", len(track)))
            for image_id, idx in track:
                f.write(struct.pack("<ii", image_id, idx))


def write_text(sparse):
    lines = ["# Camera list with one line of data per camera:"]
    lines += [f"{cid} {model} {w} {h} " + " ".join(repr(p) for p in params) for cid, model, _, w, h, params in CAMERAS]
    (sparse / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = ["# Image list with two lines of data per image:", "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME"]
    for iid, q, t, cid, name, pts in IMAGES:
        lines.append(f"{iid} " + " ".join(repr(float(v)) for v in [*q, *t]) + f" {cid} {name}")
        lines.append(" ".join(f"{x} {y} {pid}" for x, y, pid in pts))  # empty for an image without points
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    lines = ["# 3D point list"]
    for pid, xyz, rgb, err, track in POINTS:
        lines.append(f"{pid} " + " ".join(map(repr, xyz)) + " " + " ".join(map(str, rgb)) + f" {err} "
                     + " ".join(f"{i} {j}" for i, j in track))
    (sparse / "points3D.txt").write_text("\n".join(lines) + "\n")


def make_scene(root, fmt="bin", image_scale=1):
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True)
    (write_binary if fmt == "bin" else write_text)(sparse)
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    for _, _, _, _, name, _ in IMAGES:
        iio.imwrite(root / "images" / name, rng.integers(0, 255, (12 * image_scale, 16 * image_scale, 3), dtype=np.uint8))
    return root


def test_binary_and_text_parse_identically(tmp_path):
    models = {}
    for fmt in ("bin", "txt"):
        sparse = tmp_path / fmt
        sparse.mkdir()
        (write_binary if fmt == "bin" else write_text)(sparse)
        models[fmt] = read_colmap_model(sparse)
    binary, text = models["bin"], models["txt"]
    assert binary.cameras.keys() == text.cameras.keys() == {1, 2, 3}
    for cid, model, _, w, h, params in CAMERAS:
        for m in (binary, text):
            cam = m.cameras[cid]
            assert (cam.model, cam.width, cam.height) == (model, w, h)
            np.testing.assert_array_equal(cam.params, params)
    assert binary.images.keys() == text.images.keys() == {1, 2, 3, 4}
    for iid, q, t, cid, name, _ in IMAGES:
        for m in (binary, text):
            im = m.images[iid]
            assert (im.camera_id, im.name) == (cid, name)
            np.testing.assert_array_equal(im.qvec, q)
            np.testing.assert_array_equal(im.tvec, t)
    for m in (binary, text):
        np.testing.assert_array_equal(m.points.ids, [1, 7])
        np.testing.assert_array_equal(m.points.xyz, [p[1] for p in POINTS])
        np.testing.assert_array_equal(m.points.rgb, [p[2] for p in POINTS])
        np.testing.assert_array_equal(m.points.error, [0.5, 1.25])


@pytest.mark.parametrize("fmt", ["bin", "txt"])
def test_load_colmap_scene(tmp_path, fmt):
    root = make_scene(tmp_path, fmt)
    scene = load_colmap(root, "all")
    assert scene.names == [f"img_{i}.png" for i in range(4)] and scene.images.shape == (4, 12, 16, 3)
    for v, (_, q, t, cid, _, _) in enumerate(IMAGES):
        rot = Rotation.from_quat(np.roll(q, -1)).as_matrix()  # scipy: (x, y, z, w)
        expected = np.eye(4)
        expected[:3, :3], expected[:3, 3] = rot, t
        np.testing.assert_allclose(scene.viewmats[v].numpy(), expected, atol=1e-6)
    torch.testing.assert_close(scene.Ks[1], torch.tensor([[19.0, 0, 7.5], [0, 19.0, 6.5], [0, 0, 1]]))
    torch.testing.assert_close(scene.Ks[2], torch.tensor([[18.0, 0, 8.2], [0, 18.5, 5.9], [0, 0, 1]]))
    torch.testing.assert_close(scene.points, torch.tensor([p[1] for p in POINTS]))
    torch.testing.assert_close(scene.point_colors[0], torch.tensor([1.0, 0.0, 10 / 255]))
    # projection with the Scene's cameras equals COLMAP's K (R p + t) / z
    uv, _ = project_points(scene.points, scene.viewmats, scene.Ks)
    cam = scene.points.double() @ torch.from_numpy(Rotation.from_quat(np.roll(IMAGES[0][1], -1)).as_matrix()).T + torch.from_numpy(IMAGES[0][2])
    torch.testing.assert_close(uv[0].double(), torch.stack([20 * cam[:, 0] / cam[:, 2] + 8, 21 * cam[:, 1] / cam[:, 2] + 6], -1), atol=1e-4, rtol=0)
    # hold-out split: index 0 is test (every 2nd here), the rest train
    assert load_colmap(root, "test", test_every=2).names == ["img_0.png", "img_2.png"]
    assert load_scene(root, "train", test_every=2).names == ["img_1.png", "img_3.png"]


def test_downscaled_images_scale_intrinsics(tmp_path):
    root = make_scene(tmp_path, "bin", image_scale=2)
    scene = load_colmap(root, "all")
    torch.testing.assert_close(scene.Ks[0], torch.tensor([[40.0, 0, 16.0], [0, 42.0, 12.0], [0, 0, 1]]))


def test_bad_colmap_input(tmp_path):
    root = make_scene(tmp_path / "a", "bin")
    iio.imwrite(root / "images" / "stray.png", np.zeros((12, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="no pose"):
        load_colmap(root, "all")
    assert load_colmap(root, "all", skip_unposed=True).num_views == 4
    (root / "images" / "img_2.png").unlink()
    with pytest.raises(FileNotFoundError, match="img_2.png"):
        load_colmap(root, "all", skip_unposed=True)
    with pytest.raises(ValueError, match="at least 2"):
        load_colmap(root, "test", test_every=8, skip_unposed=True)
    with pytest.raises(FileNotFoundError, match="no COLMAP model"):
        load_colmap(tmp_path / "nothing")
    # a distorted OPENCV camera is refused with the fix named
    sparse = tmp_path / "distorted"
    sparse.mkdir()
    write_text(sparse)
    text = (sparse / "cameras.txt").read_text().replace("0.0 0.0 0.0 0.0", "0.1 0.0 0.0 0.0")
    (sparse / "cameras.txt").write_text(text)
    with pytest.raises(ValueError, match="image_undistorter"):
        read_colmap_model(sparse).cameras[3].intrinsics()
    # a truncated binary file
    (root / "sparse" / "0" / "images.bin").write_bytes((root / "sparse" / "0" / "images.bin").read_bytes()[:40])
    with pytest.raises(ValueError, match="truncated"):
        read_colmap_model(root / "sparse" / "0")


# ---- train / test split and images_N folders of a COLMAP scene (distill3d.data.splits) ---------------
def rendered_colmap_scene(root, num_views=10, size=32):
    """A COLMAP text model of ``num_views`` ring cameras around random Gaussians, with the rendered photos
    in ``images/`` (full size) and ``images_2/`` (2 x 2 area-averaged), names img_00 ... sorted = index order."""
    import math

    from distill3d.data.cameras import intrinsics_from_fov, look_at_opengl, opengl_to_viewmat
    from distill3d.render import rasterize

    g = torch.Generator().manual_seed(0)
    means = (torch.rand(60, 3, generator=g) * 2 - 1) * 0.6
    angles = torch.arange(num_views, dtype=torch.float64) * (2 * math.pi / num_views)
    eyes = torch.stack([3 * angles.cos(), 3 * angles.sin(), torch.ones_like(angles)], 1)
    viewmats = opengl_to_viewmat(look_at_opengl(eyes, torch.zeros(3, dtype=torch.float64),
                                                torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)))
    K = intrinsics_from_fov(math.radians(50), size, size)
    rgb, _, _, _ = rasterize(means, torch.randn(60, 4, generator=g), torch.rand(60, 3, generator=g) * 0.15 + 0.08,
                             torch.full((60,), 0.9), torch.rand(60, 3, generator=g), viewmats.float(),
                             K.float().expand(num_views, 3, 3), size, size, backend="torch")
    images = (rgb.clamp(0, 1) * 255).round().to(torch.uint8)
    halves = torch.nn.functional.avg_pool2d(images.permute(0, 3, 1, 2).float(), 2).round().to(torch.uint8).permute(0, 2, 3, 1)
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True)
    (sparse / "cameras.txt").write_text(f"1 PINHOLE {size} {size} {float(K[0, 0])!r} {float(K[1, 1])!r} {float(K[0, 2])!r} {float(K[1, 2])!r}\n")
    lines = []
    names = [f"img_{i:02d}.png" for i in range(num_views)]
    for i, name in enumerate(names):
        q = np.roll(Rotation.from_matrix(viewmats[i, :3, :3].numpy()).as_quat(), 1)  # (w, x, y, z)
        lines += [f"{i + 1} " + " ".join(repr(float(v)) for v in [*q, *viewmats[i, :3, 3].tolist()]) + f" 1 {name}", ""]
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    (sparse / "points3D.txt").write_text("".join(f"{j + 1} {p[0]} {p[1]} {p[2]} 128 128 128 0.5\n"
                                                 for j, p in enumerate(means.tolist())))
    for folder, stack in (("images", images), ("images_2", halves)):
        (root / folder).mkdir()
        for name, image in zip(names, stack):
            iio.imwrite(root / folder / name, image.numpy())
    return root, names, K.float()


def test_colmap_scene_has_an_every_8th_test_split(tmp_path):
    from distill3d.data.splits import load_scene_splits

    root, names, _ = rendered_colmap_scene(tmp_path / "scene")
    splits = load_scene_splits(root)
    assert splits.test.names == ["img_00.png", "img_08.png"]  # index % 8 == 0 of the name-sorted images
    assert splits.train.names == [n for i, n in enumerate(names) if i % 8]
    assert not set(splits.train.names) & set(splits.test.names)
    assert sorted(splits.train.names + splits.test.names) == names
    # the views keep their own cameras: the test split's first viewmat is image 0's
    assert torch.equal(splits.test.viewmats[1], load_colmap(root, "all").viewmats[8])
    every3 = load_scene_splits(root, test_every=3)
    assert every3.test.names == ["img_00.png", "img_03.png", "img_06.png", "img_09.png"] and every3.train.num_views == 6
    everything = load_scene_splits(root, test_every=0)
    assert everything.test is None and everything.train.names == names
    with pytest.raises(ValueError, match="test_every must be >= 0"):
        load_scene_splits(root, test_every=-1)


def test_images_n_folders_and_their_intrinsics(tmp_path):
    from distill3d.data.splits import load_scene_splits

    root, _, K = rendered_colmap_scene(tmp_path / "scene")
    half = load_scene_splits(root, downsample=2)  # images_2 exists: read it, nothing left to reduce
    assert (half.images, half.downsample, half.train.width, half.test.height) == ("images_2", 1, 16, 16)
    expected = K.clone()
    expected[:2] /= 2  # K' = diag(1/2, 1/2, 1) K for pixel centres at +0.5
    torch.testing.assert_close(half.train.Ks[0], expected)
    full = load_scene_splits(root, images="images", downsample=2)  # an explicit folder, the factor left to apply
    assert (full.images, full.downsample, full.train.width) == ("images", 2, 32)
    assert load_scene_splits(root, images="images_2").train.width == 16
    assert load_scene_splits(root, downsample=4).images == "images"  # no images_4: the caller reduces 4 x
    with pytest.raises(FileNotFoundError, match="images_8.*found: \\['images', 'images_2'\\]"):
        load_scene_splits(root, images="images_8")


def test_train_field_on_colmap_evaluates_on_the_test_split(tmp_path):
    from distill3d.fields.config import TrainConfig
    from distill3d.fields.pipeline import train_field
    from distill3d.inverse.pipeline import load_splits

    root, _, _ = rendered_colmap_scene(tmp_path / "scene")
    config = TrainConfig(steps=30, sh_degree=0, eval_every=0, checkpoint_every=0, backend="torch")
    config.densify.enabled = False
    trainer, metrics = train_field(root, config, tmp_path / "run", plain=True, progress=False, downscale=2)
    assert trainer.test_scene.names == ["img_00.png", "img_08.png"] and trainer.train_scene.num_views == 8
    assert trainer.train_scene.width == 16  # read from images_2
    assert metrics["psnr"] > 10 and 0 < metrics["ssim"] <= 1  # evaluated on the held-out views
    train, test = load_splits(root, 2)  # PRD reads the same split
    assert test.names == ["img_00.png", "img_08.png"] and train.width == 16
