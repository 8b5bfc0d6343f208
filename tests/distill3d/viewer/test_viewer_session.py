"""The viewer's Python API (what the server streams), checked without a browser: cameras, every render
mode against the functions it reuses, click / box segmentation against the scene's masks, edits, PRD
relighting, the RGB-only fallback, and the command's bad-input errors."""
import math
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from distill3d.data.environment import EnvironmentConfig, synthesize_environment
from distill3d.fields.field import FeatureField
from distill3d.gaussians import GaussianInitConfig, Gaussians, rgb_to_sh0
from distill3d.query import delete, select_gaussians
from distill3d.viewer.camera import ViewerCamera
from distill3d.viewer.points import box_segments, points_panels
from distill3d.viewer.session import ViewerSession
from distill3d.viewer.source import ViewerSource, load_source
from distill3d.viewer.streaming import frame_size

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from viewer_scene import oracle_field  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    field, scene = oracle_field()
    path = field.save(tmp_path_factory.mktemp("viewer") / "oracle.ply")
    return path, field, scene


def _session(oracle) -> ViewerSession:
    path, _, _ = oracle
    return ViewerSession(load_source(path, scene="default"))


def interior_pixel(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the mask pixel farthest from its edge."""
    from scipy.ndimage import distance_transform_edt

    y, x = np.unravel_index(distance_transform_edt(mask).argmax(), mask.shape)
    return int(x), int(y)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_camera_pose_round_trip_and_analytic_pose():
    # a camera at (0, 0, -3) with the identity rotation looks along +z: world -> camera adds 3 to z
    cam = ViewerCamera.from_pose((1, 0, 0, 0), (0, 0, -3), math.radians(60), 40, 20)
    torch.testing.assert_close(cam.viewmat[:3, 3], torch.tensor([0.0, 0.0, 3.0]))
    assert cam.K[1, 1].item() == pytest.approx(10 / math.tan(math.radians(30)))
    assert (cam.K[0, 2].item(), cam.K[1, 2].item()) == (20, 10)
    # any view's pose -> viser state -> back again gives the same viewmat and intrinsics
    from distill3d.data import default_scene_dir, load_scene

    scene = load_scene(default_scene_dir(), "test")
    original = ViewerCamera.from_scene(scene, 3)
    wxyz, position, fov_y = original.pose()
    again = ViewerCamera.from_pose(wxyz, position, fov_y, original.width, original.height)
    torch.testing.assert_close(again.viewmat, original.viewmat, atol=1e-5, rtol=0)
    torch.testing.assert_close(again.K, original.K, atol=1e-3, rtol=0)
    half = original.scaled(64, 64)
    assert half.K[0, 0].item() == pytest.approx(original.K[0, 0].item() / 2)


def test_frame_size_caps_the_long_side_and_scales_previews():
    assert frame_size(600, 400, 256) == (256, 171)
    assert frame_size(200, 100, 512) == (200, 100)  # never upscaled
    assert frame_size(600, 400, 256, 0.25) == (64, 43)
    assert frame_size(10, 10, 512, 0.1) == (8, 8)  # a floor keeps previews recognisable


def test_rgb_and_feature_modes_match_the_field_render(oracle):
    _, field, scene = oracle
    session = _session(oracle)
    assert session.modes == ["rgb", "depth", "feature_pca"]
    assert "speed-up decoder" in session.availability["decoder_pca"]
    cam = ViewerCamera.from_scene(scene, 5)
    reference = field.render(cam.viewmat[None], cam.K[None], cam.width, cam.height, background=session.background,
                             backend="native")
    frame = session.render(cam, "rgb")
    expected = (reference.rgb[0].clamp(0, 1).permute(1, 2, 0).detach().numpy() * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(frame.image, expected)
    assert frame.seconds > 0 and frame.image.shape == (cam.height, cam.width, 3)
    # the PCA colour map is fitted once per field: one object gets the same colour in two views
    a, b = ViewerCamera.from_scene(scene, 2), ViewerCamera.from_scene(scene, 18)
    pca_a, pca_b = session.render(a, "feature_pca").image, session.render(b, "feature_pca").image
    for obj in (2, 5):
        xa, ya = interior_pixel(scene.masks[2].numpy() == obj)
        xb, yb = interior_pixel(scene.masks[18].numpy() == obj)
        assert np.abs(pca_a[ya, xa].astype(int) - pca_b[yb, xb].astype(int)).max() <= 12
    colors = {tuple(pca_a[interior_pixel(scene.masks[2].numpy() == obj)[::-1]]) for obj in (2, 3, 4, 5, 6)}
    assert len(colors) == 5  # five objects, five colours


def test_decoder_mode_equals_decoding_the_normalised_map_then_projecting(oracle, tmp_path):
    # the frame is computed in D_low (the projection folded through the decoder); the reference decodes the
    # whole D-channel map of F / A and applies the PCA fitted on the decoded Gaussian features
    from distill3d.teachers import fit_pca

    _, field, scene = oracle
    generator = torch.Generator().manual_seed(0)
    mean = torch.randn(field.teacher_dim, generator=generator)
    basis = torch.randn(field.teacher_dim, 4, generator=generator)
    small = field.compressed(mean, basis)
    session = ViewerSession(load_source(small.save(tmp_path / "small.ply"), scene="default"))
    assert "decoder_pca" in session.modes
    cam = ViewerCamera.from_scene(scene, 5)
    with torch.no_grad():
        out = small.render(cam.viewmat[None], cam.K[None], cam.width, cam.height, background=session.background,
                           decode=False, backend="native")
        alpha = out.alpha[0]
        decoded = small.decoder((out.features[0] / alpha.clamp_min(1e-4))[None])[0]
        expected = (fit_pca(small.gaussian_features().float().T[:, :, None])(decoded) * alpha).clamp(0, 1)
    frame = session.render_tensor(cam, "decoder_pca", overlay=False)
    torch.testing.assert_close(frame, expected, atol=1e-4, rtol=0)
    assert frame.std(dim=(1, 2)).min() > 0.05  # objects in different colours, not a flat frame


def test_depth_mode_orders_near_and_far():
    # two small opaque splats straight ahead at z = 2 and z = 4: turbo's first and last colour
    from matplotlib import colormaps

    means = torch.tensor([[-0.5, 0.0, 2.0], [1.0, 0.0, 4.0]])
    gaussians = Gaussians.from_points(means, torch.full((2, 3), 0.5), GaussianInitConfig(sh_degree=0, init_opacity=0.99))
    with torch.no_grad():
        gaussians.params["scales"].fill_(math.log(0.15))
    source = ViewerSource(gaussians, None, None, None, None, torch.zeros(3), pathlib.Path("two.ply"), [])
    session = ViewerSession(source)
    cam = ViewerCamera(torch.eye(4), torch.tensor([[40.0, 0, 32], [0, 40.0, 32], [0, 0, 1]]), 64, 64)
    image = session.render(cam, "depth").image.astype(int)
    near = image[32, 32 - 10]  # x = -0.5 at z = 2 projects 10 px left of the centre
    far = image[32, 32 + 10]
    turbo = (colormaps["turbo"]([0.0, 1.0])[:, :3] * 255).round().astype(int)
    assert np.abs(near - turbo[0]).max() <= 2 and np.abs(far - turbo[1]).max() <= 2
    assert image[2, 2].tolist() == [0, 0, 0]  # background where nothing is covered


def test_click_and_box_segment_the_clicked_object(oracle):
    _, field, scene = oracle
    session = _session(oracle)
    cam = ViewerCamera.from_scene(scene, 12)
    truth = scene.masks[12].numpy()
    labels = field.gaussians.features.detach().argmax(1)
    for obj in (2, 5):
        x, y = interior_pixel(truth == obj)
        selection = session.click_segment(cam, x, y, threshold=0.8)
        assert iou(selection.mask.numpy(), truth == obj) >= 0.5
        # one-hot features: cos is 1 for the object's Gaussians and 0 for every other one
        assert torch.equal(selection.gaussians, labels == obj)
    x, y = interior_pixel(truth == 4)
    box = session.box_segment(cam, (x - 2, y - 2, x + 3, y + 3), threshold=0.8)
    assert iou(box.mask.numpy(), truth == 4) >= 0.5
    # the slider: -1 keeps everything, the mask follows the camera it is recomputed on
    everything = session.set_threshold(-1.0, cam)
    assert everything.num_gaussians == field.num_gaussians and bool(everything.mask.all())
    session.set_threshold(0.8)
    # the selection is highlighted in the RGB frame exactly where the mask is
    plain, marked = session.render(cam, "rgb", overlay=False).image, session.render(cam, "rgb").image
    changed = np.abs(plain.astype(int) - marked.astype(int)).sum(-1) > 0
    mask = session.selection.mask.numpy()
    assert changed[mask].mean() > 0.9 and not changed[~mask].any()


def test_edits_write_new_plys_equal_to_the_query_functions(oracle, tmp_path):
    path, field, scene = oracle
    session = _session(oracle)
    with pytest.raises(ValueError, match="nothing selected"):
        session.edit("extract", tmp_path / "x.ply")
    cam = ViewerCamera.from_scene(scene, 12)
    x, y = interior_pixel(scene.masks[12].numpy() == 2)
    selection = session.click_segment(cam, x, y, 0.8)
    extracted = FeatureField.load(session.edit("extract", tmp_path / "duck.ply"))
    assert extracted.num_gaussians == selection.num_gaussians
    torch.testing.assert_close(extracted.splats["means"], field.splats["means"].detach()[selection.gaussians])
    removed = FeatureField.load(session.edit("delete", tmp_path / "no_duck.ply"))
    reference = delete(field, select_gaussians(field.gaussian_features().detach(), selection.query, 0.8))
    torch.testing.assert_close(removed.splats["means"], reference.splats["means"])
    red = FeatureField.load(session.edit("recolor", tmp_path / "red.ply", color=(1.0, 0.0, 0.0)))
    torch.testing.assert_close(red.splats["sh0"][selection.gaussians, 0],
                               rgb_to_sh0(torch.tensor([1.0, 0.0, 0.0])).expand(selection.num_gaussians, 3))
    with pytest.raises(ValueError, match="the edit's output"):
        session.edit("extract", path)  # never overwrite what is being viewed
    session.edit("extract", tmp_path / "shown.ply", show=True)
    assert session.field.num_gaussians == selection.num_gaussians and session.selection is None


def test_ply_without_features_offers_rgb_and_depth_only(tmp_path):
    gaussians = Gaussians.from_points(torch.rand(50, 3), torch.rand(50, 3), GaussianInitConfig(sh_degree=1))
    path = gaussians.save_ply(tmp_path / "plain.ply")
    session = ViewerSession.open(path)
    assert session.modes == ["rgb", "depth"]
    assert "trained features" in session.availability["feature_pca"]
    assert any("no trained features" in note for note in session.notes)
    cam = ViewerCamera.from_pose((1, 0, 0, 0), (0.5, 0.5, -2.5), math.radians(50), 32, 32)
    assert session.render(cam, "rgb").image.std() > 0
    with pytest.raises(ValueError, match="not available"):
        session.render(cam, "feature_pca")
    with pytest.raises(ValueError, match="trained features"):
        session.click_segment(cam, 3, 3)


def test_prd_modes_and_relighting_match_the_inverse_package():
    sys.path.insert(0, str(REPO / "tests" / "distill3d" / "inverse"))
    from prd_tiny_scene import tiny_prd_scene

    from distill3d.data.colorspace import linear_to_srgb
    from distill3d.inverse.relight import relight

    train, test, model = tiny_prd_scene(size=24)
    env = synthesize_environment(EnvironmentConfig(height=16, width=32, sun_kappa=10.0, sun_intensity=4.0,
                                                   sun_elevation_deg=70.0, sun_azimuth_deg=200.0))
    source = ViewerSource(model.gaussians, None, model, train, torch.from_numpy(env), train.background,
                          pathlib.Path("prd"), [])
    session = ViewerSession(source)
    assert {"prd_image", "physical", "progress", "albedo", "roughness", "metallic", "normal"} <= set(session.modes)
    cam = ViewerCamera.from_scene(test, 0)
    with torch.no_grad():
        out = model.render(cam.viewmat, cam.K, cam.width, cam.height, train.background, backend="native")
    torch.testing.assert_close(session.render_tensor(cam, "albedo"), linear_to_srgb(out.albedo).clamp(0, 1))
    torch.testing.assert_close(session.render_tensor(cam, "roughness"), out.roughness.expand(3, -1, -1).clamp(0, 1))
    learned = session.render_tensor(cam, "physical")
    session.set_environment("scene")
    relit = session.render_tensor(cam, "physical")
    reference = relight(model, test.subset([0]), env, backend="native")[0]
    torch.testing.assert_close(relit, reference, atol=1e-5, rtol=0)
    assert (relit - learned).abs().mean() > 1e-3  # the new light shows
    session.set_environment(None)
    torch.testing.assert_close(session.render_tensor(cam, "physical"), learned)


def test_points_panels_draw_box_edges_side_by_side():
    from distill3d.points.boxes import corners_3d
    from distill3d.points.scan import Scan

    g = np.random.default_rng(0)
    points = np.concatenate([g.uniform([0, -10, -1], [40, 10, 1], (500, 3)), g.uniform(0, 1, (500, 1))], 1).astype(np.float32)
    boxes = np.array([[10, 2, 0, 4, 2, 1.5, 0.3]], np.float32)
    scan = Scan(points, boxes, np.zeros(1, np.int64), np.zeros(1, np.int64), "000000").validate()
    segments = box_segments(boxes)
    corners = corners_3d(torch.from_numpy(boxes))[0].numpy()
    assert segments.shape == (12, 2, 3)
    # every corner is an end of exactly three edges; every edge has length l, w or h
    ends = segments.reshape(-1, 3)
    assert all(np.isclose(ends, c).all(1).sum() == 3 for c in corners)
    lengths = sorted(set(np.round(np.linalg.norm(segments[:, 0] - segments[:, 1], axis=1), 4)))
    assert lengths == [1.5, 2.0, 4.0]
    student, teacher = points_panels(scan, {"student": boxes, "teacher": np.zeros((0, 7), np.float32)})
    assert np.array_equal(student.gt_segments, segments)
    assert teacher.points[:, 1].max() < student.points[:, 1].min()  # side by side, no overlap
    assert len(teacher.pred_segments) == 0 and len(student.pred_segments) == 12


def _console(*args, timeout=120):
    return subprocess.run([sys.executable, "-c", "import sys; from distill3d.cli import console_main; "
                           "sys.exit(console_main())", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_command_bad_input_is_one_line_and_exit_code_2(tmp_path):
    corrupt = tmp_path / "broken.ply"
    corrupt.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\nend_header\n\x00")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        in_use = _console("view", str(corrupt), "--port", str(port))
    assert in_use.returncode == 2, in_use.stderr
    assert "in use" in in_use.stderr and len(in_use.stderr.strip().splitlines()) == 1
    result = _console("view", str(corrupt), "--port", "0")
    assert result.returncode == 2, result.stderr
    assert "truncated or corrupt" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_run_folder_finds_its_field_and_scene(oracle, tmp_path):
    path, field, _ = oracle
    run = tmp_path / "run"
    run.mkdir()
    field.save(run / "point_cloud.ply")
    (run / "run.json").write_text('{"scene": "default"}')
    source = load_source(run)
    assert source.field is not None and source.scene is not None and source.scene.num_views == 32
    assert source.notes == []
    with pytest.raises(ValueError, match="not a run folder"):
        load_source(tmp_path)
    (run / "run.json").write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_source(run)
