"""Compositing: against a plain per-pixel loop of the contract, hand-computed values, gradcheck."""
import math

import pytest
import torch

from distill3d.render.compositing import ALPHA_MAX, ALPHA_MIN, TRANSMITTANCE_MIN, count_blends, rasterize_to_pixels
from distill3d.render.tiles import isect_offset_encode, isect_tiles, tile_grid


def _splats(C=2, N=15, D=4, width=20, height=12, dtype=torch.float64, opacity_high=0.95):
    means2d = torch.rand(C, N, 2, dtype=dtype) * torch.tensor([width, height], dtype=dtype)
    L = torch.randn(C, N, 2, 2, dtype=dtype) * 0.6
    cov = L @ L.transpose(-1, -2) + 0.8 * torch.eye(2, dtype=dtype)
    inv = torch.linalg.inv(cov)
    conics = torch.stack([inv[..., 0, 0], inv[..., 0, 1], inv[..., 1, 1]], dim=-1)
    radii = torch.ceil(3 * torch.sqrt(torch.linalg.eigvalsh(cov)[..., -1])).to(torch.int32)[..., None].expand(C, N, 2).contiguous()
    depths = torch.rand(C, N, dtype=dtype) + 1
    colors = torch.randn(C, N, D, dtype=dtype)
    opacities = torch.rand(C, N, dtype=dtype) * (opacity_high - 0.05) + 0.05
    return means2d, conics, radii, depths, colors, opacities


def _lists(means2d, radii, depths, width, height, ts):
    tw, th = tile_grid(width, height, ts)
    _, isect_ids, flatten_ids = isect_tiles(means2d, radii, depths, ts, tw, th)
    return isect_offset_encode(isect_ids, means2d.shape[0], tw, th), flatten_ids


def _loop_reference(means2d, conics, radii, depths, colors, opacities, width, height, ts, backgrounds):
    """The contract written as the plainest possible loop (pixel by pixel, Gaussian by Gaussian)."""
    C, N, D = colors.shape
    tw, th = tile_grid(width, height, ts)
    out = torch.zeros(C, height, width, D, dtype=colors.dtype)
    alpha_out = torch.zeros(C, height, width, 1, dtype=colors.dtype)
    blends = stops = 0
    for c in range(C):
        for y in range(height):
            for x in range(width):
                tx, ty = x // ts, y // ts
                members = []
                for g in range(N):
                    mx, my = means2d[c, g].tolist()
                    r = int(radii[c, g, 0])
                    if (min(max(math.floor((mx - r) / ts), 0), tw) <= tx < min(max(math.ceil((mx + r) / ts), 0), tw)
                            and min(max(math.floor((my - r) / ts), 0), th) <= ty < min(max(math.ceil((my + r) / ts), 0), th)):
                        members.append((float(depths[c, g]), g))
                T = 1.0
                for _, g in sorted(members):
                    dx, dy = x + 0.5 - float(means2d[c, g, 0]), y + 0.5 - float(means2d[c, g, 1])
                    a, b, cc = conics[c, g].tolist()
                    sigma = 0.5 * (a * dx * dx + cc * dy * dy) + b * dx * dy
                    if sigma < 0:
                        continue
                    alpha = min(ALPHA_MAX, float(opacities[c, g]) * math.exp(-sigma))
                    if alpha < ALPHA_MIN:
                        continue
                    if T * (1 - alpha) <= TRANSMITTANCE_MIN:
                        stops += 1
                        break
                    out[c, y, x] += alpha * T * colors[c, g]
                    T *= 1 - alpha
                    blends += 1
                out[c, y, x] += T * backgrounds[c]
                alpha_out[c, y, x] = 1 - T
    return out, alpha_out, blends, stops


def test_matches_per_pixel_loop_including_saturation():
    width, height, ts = 20, 12, 8
    means2d, conics, radii, depths, colors, opacities = _splats(N=25, opacity_high=0.999)
    opacities[0, :12] = 0.999  # a stack of nearly opaque splats: exercises the 1e-4 stop and the 0.999 clamp
    means2d[0, :12] = means2d[0, :12] * 0.2 + torch.tensor([8.0, 5.0], dtype=torch.float64)
    backgrounds = torch.rand(2, 4, dtype=torch.float64)
    offsets, flatten_ids = _lists(means2d, radii, depths, width, height, ts)
    render, alpha = rasterize_to_pixels(means2d, conics, colors, opacities, width, height, ts, offsets, flatten_ids, backgrounds)
    ref, ref_alpha, blends, stops = _loop_reference(means2d, conics, radii, depths, colors, opacities, width, height, ts, backgrounds)
    torch.testing.assert_close(render, ref)
    torch.testing.assert_close(alpha, ref_alpha)
    assert count_blends(means2d, conics, opacities, width, height, ts, offsets, flatten_ids) == blends
    assert stops > 0  # some pixels did saturate


def test_hand_computed_single_splat():
    """One splat at a pixel centre: alpha = o at the centre, o exp(-a/2) one pixel to the right."""
    o, var = 0.7, 2.0
    means2d = torch.tensor([[[4.5, 3.5]]], dtype=torch.float64)
    conics = torch.tensor([[[1 / var, 0.0, 1 / var]]], dtype=torch.float64)
    radii = torch.full((1, 1, 2), 5, dtype=torch.int32)
    colors = torch.tensor([[[0.2, 0.4, 1.0]]], dtype=torch.float64)
    bg = torch.tensor([[1.0, 0.0, 0.5]], dtype=torch.float64)
    offsets, ids = _lists(means2d, radii, torch.ones(1, 1, dtype=torch.float64), 9, 7, 4)
    render, alpha = rasterize_to_pixels(means2d, conics, colors, torch.tensor([[o]], dtype=torch.float64), 9, 7, 4, offsets, ids, bg)
    torch.testing.assert_close(render[0, 3, 4], o * colors[0, 0] + (1 - o) * bg[0])
    side = o * math.exp(-0.5 / var)
    torch.testing.assert_close(render[0, 3, 5], side * colors[0, 0] + (1 - side) * bg[0])
    torch.testing.assert_close(alpha[0, 3, 4, 0].item(), o)


def test_geometry_channels_detach_feature_weights():
    width, height, ts = 12, 10, 8
    means2d, conics, radii, depths, colors, opacities = _splats(N=8, width=width, height=height)
    offsets, ids = _lists(means2d, radii, depths, width, height, ts)
    inputs = [t.clone().requires_grad_(True) for t in (means2d, conics, colors, opacities)]
    render, _ = rasterize_to_pixels(*inputs[:3], inputs[3], width, height, ts, offsets, ids, torch.rand(2, 4, dtype=torch.float64), geometry_channels=1)
    render[..., 1:].sum().backward()  # a loss on the "feature" channels only
    assert inputs[0].grad.abs().sum() == 0 and inputs[1].grad.abs().sum() == 0 and inputs[3].grad.abs().sum() == 0
    assert inputs[2].grad[..., 1:].abs().sum() > 0 and inputs[2].grad[..., 0].abs().sum() == 0
    render_all, _ = rasterize_to_pixels(*(t.detach() for t in inputs), width, height, ts, offsets, ids)
    render_geo, _ = rasterize_to_pixels(*(t.detach() for t in inputs), width, height, ts, offsets, ids, geometry_channels=2)
    torch.testing.assert_close(render_all, render_geo)  # values do not depend on the switch


def test_compositing_gradcheck():
    width, height, ts = 8, 6, 4
    means2d, conics, radii, depths, colors, opacities = _splats(C=1, N=4, D=3, width=width, height=height, opacity_high=0.8)
    radii[:] = 30  # every splat in every tile: no tile-border discontinuity
    offsets, ids = _lists(means2d, radii, depths, width, height, ts)
    inputs = tuple(t.clone().requires_grad_(True) for t in (means2d, conics, colors, opacities, torch.rand(1, 3, dtype=torch.float64)))

    def run(m, q, c, o, bg):
        return rasterize_to_pixels(m, q, c, o, width, height, ts, offsets, ids, bg)

    assert torch.autograd.gradcheck(run, inputs)


def test_invalid_geometry_channels():
    means2d, conics, radii, depths, colors, opacities = _splats(C=1, N=2, D=3)
    offsets, ids = _lists(means2d, radii, depths, 20, 12, 8)
    with pytest.raises(ValueError, match="geometry_channels"):
        rasterize_to_pixels(means2d, conics, colors, opacities, 20, 12, 8, offsets, ids, geometry_channels=4)


def test_negative_sigma_is_skipped_with_finite_gradients():
    """An indefinite conic gives sigma < 0 (huge exp(-sigma)) away from the centre: skipped, no NaN grads."""
    means2d = torch.tensor([[[4.0, 4.0]]], dtype=torch.float64, requires_grad=True)
    conics = torch.tensor([[[-500.0, 0.0, -500.0]]], dtype=torch.float64, requires_grad=True)
    radii = torch.full((1, 1, 2), 8, dtype=torch.int32)
    offsets, ids = _lists(means2d.detach(), radii, torch.ones(1, 1, dtype=torch.float64), 8, 8, 8)
    opacities = torch.full((1, 1), 0.5, dtype=torch.float64, requires_grad=True)
    render, alpha = rasterize_to_pixels(means2d, conics, torch.ones(1, 1, 1, dtype=torch.float64), opacities, 8, 8, 8, offsets, ids)
    assert (render == 0).all()
    (render.sum() + alpha.sum()).backward()
    assert all(torch.isfinite(t.grad).all() for t in (means2d, conics, opacities))
