"""The Blender reader and the Scene container on the committed default scene; bad input."""
import json
import math
import shutil

import pytest
import torch

from distill3d.data import Scene, default_scene_dir, load_blender, load_scene
from distill3d.data.cameras import project_points, unproject_depth
from distill3d.data.recipes import get_recipe

DEFAULT = get_recipe("default")


@pytest.fixture(scope="module")
def train():
    return load_blender(default_scene_dir(), "train")


@pytest.fixture(scope="module")
def test_split():
    return load_blender(default_scene_dir(), "test", background=(1.0, 1.0, 1.0))


def test_committed_scene_contents(train, test_split):
    r, c = DEFAULT.render, DEFAULT.cameras
    assert train.images.shape == (c.num_train, r.height, r.width, 3)
    assert test_split.num_views == c.num_test and test_split.split == "test"
    fx = 0.5 * r.width / math.tan(math.radians(c.fov_x_deg) / 2)
    torch.testing.assert_close(train.Ks[0], torch.tensor([[fx, 0, r.width / 2], [0, fx, r.height / 2], [0, 0, 1]]))
    for name in ("alphas", "depths", "normals", "albedos", "roughness", "metallic", "masks"):
        assert getattr(train, name) is not None, name
    assert train.relit_images is None and test_split.relit_images is not None
    assert train.object_names == ["background", "table"] + [o.name for o in DEFAULT.objects]
    assert set(train.masks.unique().tolist()) == set(range(len(train.object_names)))
    assert train.environment.shape == (64, 128, 3) and not torch.equal(train.environment, train.relight_environment)
    # every camera sits on the rig's sphere around its target
    dist = (train.camera_centers() - torch.tensor(c.target)).norm(dim=-1)
    torch.testing.assert_close(dist, torch.full_like(dist, c.radius))


def test_background_compositing(train, test_split):
    empty = train.alphas[..., 0] == 0
    assert bool(empty.any())
    assert float(train.images[empty].abs().max()) == 0.0  # black background
    empty_test = test_split.alphas[..., 0] == 0
    assert float((test_split.images[empty_test] - 1.0).abs().max()) == 0.0  # white background


def test_materials_follow_the_masks(train):
    for obj_id, spec in enumerate(DEFAULT.objects, start=2):
        sel = train.masks == obj_id
        assert float((train.roughness[sel] - spec.material.roughness).abs().max()) <= 1 / 255
        assert float((train.metallic[sel] - spec.material.metallic).abs().max()) <= 1 / 255


def test_depth_is_consistent_across_views(train):
    """Points unprojected from a view's depth land, in the nearest other view, where that view's own depth
    and masks put them (same object; the residual is the depth change within the pixel hit)."""
    centres = train.camera_centers()
    gaps = torch.cdist(centres, centres) + 1e9 * torch.eye(train.num_views)
    errors = []
    for a in (0, 5, 13):
        b = int(gaps[a].argmin())
        on_object = train.masks[a] > 0
        pts = unproject_depth(train.depths[a, ..., 0].double(), train.Ks[a].double(), train.viewmats[a].double())[on_object]
        uv, z = project_points(pts, train.viewmats[b : b + 1].double(), train.Ks[b : b + 1].double())
        cols, rows = uv[0, :, 0].floor().long(), uv[0, :, 1].floor().long()
        inside = (cols >= 0) & (cols < train.width) & (rows >= 0) & (rows < train.height)
        same_object = train.masks[b, rows[inside], cols[inside]] == train.masks[a][on_object][inside]
        seen = train.depths[b, rows[inside], cols[inside], 0].double()
        errors.append(((seen - z[0, inside]).abs() / seen)[same_object])
    err = torch.cat(errors)
    assert float(err.median()) < 0.004
    assert float((err < 0.01).double().mean()) > 0.9


def test_scene_subset_and_validation(train):
    sub = train.subset([3, 1])
    assert sub.names == [train.names[3], train.names[1]]
    torch.testing.assert_close(sub.depths[1], train.depths[1])
    with pytest.raises(ValueError, match="Ks"):
        Scene(images=train.images[:2], Ks=train.Ks[:3], viewmats=train.viewmats[:2], names=["a", "b"])
    with pytest.raises(ValueError, match="number of views"):
        Scene(images=train.images[:2], Ks=train.Ks[:2], viewmats=train.viewmats[:2], names=["a"])
    bad = train.images[:2].clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="images has 1 non-finite"):
        Scene(images=bad, Ks=train.Ks[:2], viewmats=train.viewmats[:2], names=["a", "b"])
    with pytest.raises(ValueError, match="depths"):
        Scene(images=train.images[:2], Ks=train.Ks[:2], viewmats=train.viewmats[:2], names=["a", "b"], depths=train.depths[:2, :5])


@pytest.fixture()
def scene_copy(tmp_path):
    """A copy of the default scene's transforms and first three train images (no extra buffers)."""
    src = default_scene_dir()
    meta = json.loads((src / "transforms_train.json").read_text())
    frames = [{"file_path": f["file_path"], "transform_matrix": f["transform_matrix"]} for f in meta["frames"][:3]]
    (tmp_path / "train").mkdir()
    for f in frames:
        shutil.copy(src / (f["file_path"] + ".png"), tmp_path / (f["file_path"] + ".png"))
    meta = {"camera_angle_x": meta["camera_angle_x"], "frames": frames}
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    return tmp_path, meta


def test_missing_bundled_scene_names_the_build_command():
    with pytest.raises(FileNotFoundError, match="distill3d scenes build nope"):
        default_scene_dir("nope")


def test_plain_blender_scene_without_buffers(scene_copy, train):
    root, _ = scene_copy
    scene = load_scene(root, "train")
    assert scene.num_views == 3 and scene.depths is None and scene.masks is None and scene.alphas is not None
    torch.testing.assert_close(scene.images, train.images[:3])
    torch.testing.assert_close(scene.viewmats, train.viewmats[:3])


def test_bad_blender_input(scene_copy, tmp_path_factory):
    root, meta = scene_copy
    path = root / "transforms_train.json"
    with pytest.raises(FileNotFoundError, match="transforms_test.json"):
        load_blender(root, "test")
    no_pose = json.loads(json.dumps(meta))
    del no_pose["frames"][1]["transform_matrix"]
    path.write_text(json.dumps(no_pose))
    with pytest.raises(ValueError, match="without a pose"):
        load_blender(root)
    one = {**meta, "frames": meta["frames"][:1]}
    path.write_text(json.dumps(one))
    with pytest.raises(ValueError, match="at least 2"):
        load_blender(root)
    missing = json.loads(json.dumps(meta))
    missing["frames"][2]["file_path"] = "./train/nope"
    path.write_text(json.dumps(missing))
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_blender(root)
    bad_pose = json.loads(json.dumps(meta))
    bad_pose["frames"][0]["transform_matrix"] = [[1, 0, 0], [0, 1, 0]]
    path.write_text(json.dumps(bad_pose))
    with pytest.raises(ValueError, match="4 x 4"):
        load_blender(root)
    for text, problem in (('{"frames": [\n', "is not valid JSON"), ("[]", "must hold a JSON object")):
        path.write_text(text)
        with pytest.raises(ValueError, match=f"camera file {path} {problem}"):
            load_blender(root)
    images_only = tmp_path_factory.mktemp("images_only")
    shutil.copytree(root / "train", images_only / "images")
    with pytest.raises(FileNotFoundError, match="without camera poses"):
        load_scene(images_only)
