"""Native EWA projection in SIMD lanes (csrc/cpu/projection_cpu.cpp) against the torch reference.

The CPU kernel projects blocks of 8 (float32) or 4 (float64) Gaussians at once and selects culled
lanes away, so a Gaussian's result must not depend on its lane, on its neighbours being culled, or on
the block being cut short at N. The scene repeats 7 cases (7 is prime to both widths, so every case sits
at every lane position) over N not a multiple of either width, in two cameras (the second camera's
outputs start mid-block).
"""
import pytest
import torch

from distill3d.render import native
from distill3d.render.random_scene import look_at_viewmat

from test_native_projection import project_both

# Camera-space placement of each case (camera 0 sits at the origin looking down +z; NEAR = 0.5, FAR = 7).
CASES = ("visible", "behind", "beyond_far", "off_right", "off_below", "huge_variance", "close")
CULLED = {"behind", "beyond_far", "off_right", "off_below", "huge_variance"}


@pytest.fixture(scope="module", autouse=True)
def _built():
    assert native.native_available("cpu"), native.native_build_error()


def lane_scene(N, dtype, seed=0):
    """N Gaussians cycling through CASES, seen by camera 0 (identity pose) and camera 1 (shifted and turned
    slightly, so its cases mostly but not all match camera 0's)."""
    g = torch.Generator().manual_seed(seed)
    case = torch.arange(N) % len(CASES)
    jitter = torch.rand(N, 3, generator=g, dtype=torch.float64) - 0.5
    centre = torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, -2.0], [0.0, 0.0, 9.0], [25.0, 0.0, 3.0],
                           [0.0, 20.0, 3.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.8]], dtype=torch.float64)
    means = centre[case] + jitter * torch.tensor([0.3, 0.3, 0.2], dtype=torch.float64)
    quats = torch.randn(N, 4, generator=g, dtype=torch.float64)
    scales = 0.05 * torch.exp(0.5 * torch.randn(N, 3, generator=g, dtype=torch.float64))
    scales[case == CASES.index("huge_variance")] = 1e8  # a 2D variance far above MAX_VARIANCE_2D
    viewmats = torch.stack([
        torch.eye(4, dtype=torch.float64),
        look_at_viewmat(torch.tensor([0.3, -0.2, -0.1], dtype=torch.float64), torch.tensor([0.1, 0.0, 3.0], dtype=torch.float64),
                        torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)),
    ])
    Ks = torch.tensor([[70.0, 0, 31.0], [0, 65.0, 25.0], [0, 0, 1]], dtype=torch.float64).repeat(2, 1, 1)
    return case, [t.to(dtype) for t in (means, quats, scales, viewmats, Ks)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("N", [61, 3])
def test_culled_lanes_match_reference(N, dtype):
    case, inputs = lane_scene(N, dtype)
    (want, want_grads), (got, got_grads) = project_both(*inputs)
    radii = got[0][..., 0]
    if N > len(CASES):  # the scene is what it claims: each case culled or kept in camera 0, at every lane
        width = 8 if dtype == torch.float32 else 4
        for index, name in enumerate(CASES):
            mine = case == index
            assert bool((radii[0, mine] == 0).all() if name in CULLED else (radii[0, mine] > 0).all()), name
            assert set((torch.nonzero(mine)[:, 0] % width).tolist()) == set(range(width)), name
    assert torch.equal(got[0], want[0])
    tolerance = 1e-5 if dtype == torch.float32 else 1e-9
    for name, w, g in zip(("means2d", "depths", "conics", "compensations"), want[1:], got[1:]):
        torch.testing.assert_close(g, w, rtol=tolerance, atol=tolerance * float(w.abs().max().clamp(min=1)), msg=name)
        assert bool((g[got[0][..., 0] == 0] == 0).all()) or name == "depths", f"{name} of a culled pair is not 0"
    for name, w, g in zip(("means", "quats", "scales"), want_grads, got_grads):
        scale = float(w.abs().max().clamp(min=1e-12))
        assert float((g - w).abs().max()) / scale < 10 * tolerance, name
        if name != "means":  # the loss includes the depths, which pass gradients to every mean
            culled_everywhere = (radii == 0).all(dim=0)
            assert bool((g[culled_everywhere] == 0).all()), f"a Gaussian culled in every camera got a {name} gradient"
