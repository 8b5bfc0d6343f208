"""Unmodelled light (distill3d.inverse.unmodelled) on scenes rendered by a known model, with direct-only
renders made from a known unmodelled fraction."""
import math
from copy import deepcopy

import pytest
import torch

from distill3d.data import Scene
from distill3d.data.cameras import intrinsics_from_fov
from distill3d.data.colorspace import srgb_to_linear
from distill3d.inverse.unmodelled import MAX_LUMINANCE, MIN_LUMINANCE, fallback_report, unmodelled_fraction
from prd_tiny_scene import ground_truth_model, ring_viewmats

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 24


def photographed(model, views: int = 3) -> Scene:
    """The physical renders of ``model`` (progress 1) as the photos of a test split."""
    viewmats = ring_viewmats(views, offset=0.4)
    K = intrinsics_from_fov(math.radians(45), SIZE, SIZE).float()
    with torch.no_grad():
        renders = [model.render(v, K, SIZE, SIZE, torch.zeros(3)) for v in viewmats]
    stack = lambda name: torch.stack([getattr(r, name).permute(1, 2, 0) for r in renders])  # noqa: E731
    return Scene(stack("physical").clamp(0, 1), K.expand(views, 3, 3).clone(), viewmats, [f"v{i}" for i in range(views)],
                 split="test", alphas=stack("coverage"), albedos=stack("albedo"))


def test_unmodelled_fraction_recovers_the_share_taken_out_of_the_direct_render():
    model, _ = ground_truth_model()
    scene = photographed(model)
    truth = torch.where(torch.arange(SIZE) < SIZE // 2, 0.1, 0.5).expand(3, SIZE, SIZE)  # left / right halves
    direct = srgb_to_linear(scene.images) * (1 - truth)[..., None]
    f, valid = unmodelled_fraction(scene, direct)
    luminance = srgb_to_linear(scene.images).mean(-1)
    assert valid.sum() > 200
    assert torch.equal(valid, (scene.alphas[..., 0] > 0.5) & (luminance > MIN_LUMINANCE) & (luminance < MAX_LUMINANCE))
    torch.testing.assert_close(f[valid], truth[valid], atol=1e-5, rtol=0)


def test_fallback_report_measures_a_progress_map_that_follows_the_unmodelled_light():
    """The photos are the physical model's own renders, the progress map is low on one side of the sphere
    and the direct renders lack a share proportional to ``1 - alpha_p``: correlation 1, the physical
    image fits everywhere, the radiance image (the init SH colours) does not."""
    model, _ = ground_truth_model()
    scene = photographed(model)
    learned = deepcopy(model)
    learned.config.progress = "learned"
    with torch.no_grad():
        low = learned.gaussians.means[:, 0] > 0
        learned.gaussians.params["progress"].copy_(torch.logit(torch.where(low, 0.3, 0.999))[:, None])
        K = scene.Ks[0]
        progress = torch.stack([learned.render(v, K, SIZE, SIZE, torch.zeros(3)).progress[0] for v in scene.viewmats])
    truth = 0.8 * (1 - progress)
    report = fallback_report(learned, scene, srgb_to_linear(scene.images) * (1 - truth)[..., None])
    assert report["correlation_1_minus_progress_vs_unmodelled"] > 0.999
    assert report["dominated_pixel_fraction"] > 0.1
    assert report["progress_dominated"] < 0.7 < report["progress_rest"]
    assert report["physical_abs_error_dominated"] < 1e-4 and report["physical_abs_error_rest"] < 1e-4
    assert report["radiance_abs_error_dominated"] > 0.01 and report["radiance_abs_error_rest"] > 0.01
    assert report["albedo_abs_error_dominated"] < 1e-4  # the scene's albedo is the model's own
