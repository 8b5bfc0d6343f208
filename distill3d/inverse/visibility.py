"""Visibility of the environment from each Gaussian, baked by tracing the Gaussians (GS-IR, R3DG).

For D fixed directions ``d_k`` (a Fibonacci sphere) and each Gaussian i, the transmittance of the ray
leaving its centre along ``d_k`` through all the other Gaussians, with the 3D Gaussian response at its
maximum along the ray (3DGRT, R3DG):

    V_ik = prod_j (1 - alpha_j)^gamma,   alpha_j = min(0.999, o_j exp(-q_j / 2)),   counted when alpha_j >= 1/255
    q_j  = x^T Sigma_perp_j^-1 x,  x = (p - mu_j) projected on the plane orthogonal to d   (the minimum over
           t of the Mahalanobis distance of p + t d, i.e. orthographic splatting along d)
    t*_j = d.(mu_j - p) + Sigma_{d,perp} Sigma_perp^-1 (x_p - x_mu) > 0      (the maximum lies ahead)

The ray starts at ``p = mu_i + eps_i sign(n_i . d) n_i`` (``n_i`` the shortest axis, ``s_i,min`` the
Gaussian's standard deviation along it), on the side of the surface that faces ``d``, with

    eps_i = eps + k s_i,min

clear of the Gaussian's own extent; each occluder's optical depth ``-log(1 - alpha_j)`` is scaled by ``gamma``
(its alpha sharpened to ``1 - (1 - alpha_j)^gamma``; the same as ``V^gamma``, see below). A trained radiance
field models a surface as a layer of soft blobs a few ``s_min`` thick (on ``interreflect`` after 300 steps:
s_min ~ 0.022, opacity ~ 0.33), so a ray starting a fixed eps off the centre runs inside the layer and its
neighbours shadow it: with k = 0 a flat, unoccluded patch of table saw 0.59 of its (cosine-weighted) upper
hemisphere, with k = 3 0.95; the true materials shaded under the training light matched the renderer's
direct-only images (one bounce, true shadows) at 12.6 dB with k = 0, 16.2 dB without visibility and 17.9 dB
with k = 3. Ignoring occluders within 3 s_max of the start as well lowered that to 17.7 dB (it drops real
shadows), so it is not done.

Occluder sharpening ``gamma`` (``optical_depth_gain``): the soft surfaces of a short radiance training let
light through occluders. Measured against rays traced on the recipes' true shapes (``benchmarks/prd.py``,
``visibility_leak``: table-top receivers, seed 0, quick size), the visible fraction of the training light
``sum_k V_k w_k / sum_k w_k`` (``w_k = mean_c B_k,c max(0, b_k . z)``) of receivers in cast shadow was 0.277 /
0.523 / 0.521 baked with gamma = 1 against 0.252 / 0.447 / 0.457 true on the same directions (interreflect /
default / glossy): a tenth to a fifth of the blocked light leaks. gamma = 1.5 gives 0.256 / 0.458 / 0.456;
gamma = 2 overshoots on two of them (0.246 / 0.419 / 0.416). The price is on lit receivers, already
over-shadowed by grazing rays through the soft table layer (0.877 / 0.870 / 0.876 baked, 0.946 / 0.938 /
0.939 true): 0.870 / 0.862 / 0.868 with 1.5. Counting a ray as blocked once its transmittance falls below
1/2 (a surface where the accumulated opacity crosses 1/2, as depth-based occlusion takes it) closes less of
the leak (0.270 / 0.500 / 0.503).

Candidate occluders are binned on a grid in the plane orthogonal to each direction (their 2D footprint where
alpha >= 1/255), so each ray tests only the Gaussians over its cell.

Shading (``shading.py``) uses the baked ``V`` [N, D] two ways, both per Gaussian and splatted:

- diffuse: the irradiance the occluders take away, subtracted from the unshadowed SH irradiance:
  ``E_blocked,i = sum_k (1 - V_ik) B_k max(0, n_i . b_k)`` with ``B_k = sum_{t in cell k} L_t dOmega_t``
  the light of the cube texels nearest to ``d_k`` and ``b_k`` their radiance-weighted mean direction;
- specular: ``V_spec,i = sum_k V_ik w_ik / sum_k w_ik``, ``w_ik = exp(kappa_i (r_i . d_k - 1))`` around the
  reflected direction ``r_i``, ``kappa_i = min(2 / roughness_i^4, kappa_max)`` (wider lobes for rough
  surfaces; at most as sharp as the direction set resolves).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from distill3d.render.compositing import ALPHA_MAX, ALPHA_MIN
from distill3d.render.projection import covariance_3d

from .cubemap import texel_directions, texel_solid_angles
from .normals import shortest_axes

GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


@dataclass
class VisibilityConfig:
    enabled: bool = False  # bake V after the radiance pre-training and shade with it
    num_directions: int = 128  # D: ~18 degrees between neighbouring directions
    ray_offset: float = 0.005  # eps, times the scene scale (camera distance): start of the rays off the surface
    ray_offset_sigmas: float = 3.0  # k: plus k times each Gaussian's own extent along its normal (module doc)
    grid_cells: int = 256  # binning grid per direction: at most this many cells along the projected scene's wider side
    max_pairs: int = 4_000_000  # ray-Gaussian tests evaluated at once (memory ~ 100 bytes each)
    specular_sharpness_max: float = 40.0  # kappa_max of the specular visibility lobe
    optical_depth_gain: float = 1.5  # gamma: V = prod_j (1 - alpha_j)^gamma, sharper soft occluders (module doc)

    def validate(self) -> None:
        from distillcore.checks import check_range

        check_range(self.num_directions, "model.visibility.num_directions", 4, integer=True)
        check_range(self.ray_offset, "model.visibility.ray_offset", 0)
        check_range(self.ray_offset_sigmas, "model.visibility.ray_offset_sigmas", 0)
        check_range(self.grid_cells, "model.visibility.grid_cells", 1, integer=True)
        check_range(self.max_pairs, "model.visibility.max_pairs", 1, integer=True)
        check_range(self.specular_sharpness_max, "model.visibility.specular_sharpness_max", 0, low_open=True)
        check_range(self.optical_depth_gain, "model.visibility.optical_depth_gain", 0, low_open=True)


def fibonacci_directions(count: int, dtype: torch.dtype = torch.float32) -> Tensor:  # [count, 3]
    """``count`` near-uniform unit directions: ``z_k = 1 - (2k + 1) / count``, azimuth ``k * golden angle``."""
    k = torch.arange(count, dtype=torch.float64)
    z = 1.0 - (2.0 * k + 1.0) / count
    r = torch.sqrt((1.0 - z * z).clamp(min=0.0))
    phi = k * GOLDEN_ANGLE
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1).to(dtype)


def _plane_basis(d: Tensor) -> tuple[Tensor, Tensor]:
    """Two unit vectors completing ``d`` to an orthonormal basis."""
    helper = torch.tensor([1.0, 0.0, 0.0], dtype=d.dtype) if abs(float(d[0])) < 0.9 else torch.tensor([0.0, 1.0, 0.0], dtype=d.dtype)
    u = torch.nn.functional.normalize(torch.linalg.cross(d, helper), dim=0)
    return u, torch.linalg.cross(d, u)


def _segments(counts: Tensor) -> tuple[Tensor, Tensor]:
    """For segment lengths ``counts [S]``: each element's segment index and its position inside it."""
    segment = torch.repeat_interleave(torch.arange(len(counts)), counts)
    starts = torch.cumsum(counts, 0) - counts
    return segment, torch.arange(int(counts.sum())) - starts[segment]


@torch.no_grad()
def trace_transmittance(origins: Tensor,  # [Q, 3]
                        offsets: Tensor,  # [Q, 3] added to the origin on the side each direction points to
                        means: Tensor,  # [N, 3]
                        quats: Tensor,  # [N, 4]
                        scales: Tensor,  # [N, 3] activated
                        opacities: Tensor,  # [N] activated
                        directions: Tensor,  # [D, 3] unit
                        exclude: Tensor | None = None,  # [Q] index of a Gaussian each ray ignores (itself), -1: none
                        grid_cells: int = 256,
                        max_pairs: int = 4_000_000,
                        optical_depth_gain: float = 1.0,  # gamma of the module doc
                        ) -> Tensor:  # [Q, D]
    """Transmittance of the rays ``origins + sign(offsets . d) offsets + t d`` (t > 0) through the Gaussians
    (formula in the module doc, each occluder's optical depth scaled by ``optical_depth_gain``)."""
    num_queries = origins.shape[0]
    covariance = covariance_3d(quats, scales).double()
    reach = torch.sqrt((2.0 * torch.log(opacities.double().clamp(min=ALPHA_MIN) / ALPHA_MIN)).clamp(min=0.0))
    occluders = torch.nonzero(opacities >= ALPHA_MIN)[:, 0]
    radius = scales.double().max(-1).values[occluders] * reach[occluders]  # 2D footprint bound where alpha >= 1/255
    log_t = torch.zeros(num_queries, directions.shape[0], dtype=torch.float64)
    exclude = torch.full((num_queries,), -1, dtype=torch.long) if exclude is None else exclude
    for k, d in enumerate(directions.double()):
        u, v = _plane_basis(d)
        side = torch.where((offsets.double() @ d)[:, None] < 0, -1.0, 1.0)
        p = origins.double() + side * offsets.double()
        basis = torch.stack([u, v, d])  # rows
        p_local, mu_local = p @ basis.T, means.double() @ basis.T  # [.., 3]: (u, v, depth)
        sigma_local = basis @ covariance @ basis.T  # [N, 3, 3] in the (u, v, d) frame
        a, b, c = sigma_local[:, 0, 0], sigma_local[:, 0, 1], sigma_local[:, 1, 1]
        det = (a * c - b * b).clamp(min=1e-30)
        inverse = torch.stack([c / det, -b / det, a / det], -1)  # Sigma_perp^-1 as (xx, xy, yy)
        # regression of depth on the in-plane offset: t* = depth(mu) - depth(p) + g . (x_p - x_mu)
        gain = torch.stack([sigma_local[:, 2, 0] * inverse[:, 0] + sigma_local[:, 2, 1] * inverse[:, 1],
                            sigma_local[:, 2, 0] * inverse[:, 1] + sigma_local[:, 2, 1] * inverse[:, 2]], -1)
        # bin the occluders' footprints on a grid over the projected scene
        centre2d = mu_local[occluders, :2]
        low = torch.minimum(p_local[:, :2].min(0).values, (centre2d - radius[:, None]).min(0).values)
        high = torch.maximum(p_local[:, :2].max(0).values, (centre2d + radius[:, None]).max(0).values)
        # cells no smaller than the typical footprint: each occluder then lands in a few cells only
        cell = max(float((high - low).max()) / grid_cells, float(radius.median())) + 1e-12
        side_cells = int(math.floor(float((high - low).max()) / cell)) + 1
        first = torch.floor((centre2d - radius[:, None] - low) / cell).long().clamp(0, side_cells - 1)
        last = torch.floor((centre2d + radius[:, None] - low) / cell).long().clamp(0, side_cells - 1)
        span = last - first + 1
        owner, position = _segments(span[:, 0] * span[:, 1])
        cells = (first[owner, 0] + position // span[owner, 1]) * side_cells + first[owner, 1] + position % span[owner, 1]
        order = torch.argsort(cells)
        binned, binned_cells = occluders[owner[order]], cells[order]
        per_cell = torch.bincount(binned_cells, minlength=side_cells * side_cells)
        cell_start = torch.cumsum(per_cell, 0) - per_cell
        query_cell = torch.floor((p_local[:, :2] - low) / cell).long().clamp(0, side_cells - 1)
        query_cell = query_cell[:, 0] * side_cells + query_cell[:, 1]
        pairs_per_query = per_cell[query_cell]
        # queries in chunks of at most max_pairs ray-Gaussian tests
        bounds = torch.cumsum(pairs_per_query, 0)
        start = 0
        while start < num_queries:
            stop = int(torch.searchsorted(bounds, bounds[start] - pairs_per_query[start] + max_pairs, right=True))
            stop = min(max(stop, start + 1), num_queries)
            queries = torch.arange(start, stop)
            which, slot = _segments(pairs_per_query[queries])
            q = queries[which]
            j = binned[cell_start[query_cell[q]] + slot]
            delta = p_local[q, :2] - mu_local[j, :2]
            inv = inverse[j]
            mahalanobis = (inv[:, 0] * delta[:, 0] ** 2 + 2 * inv[:, 1] * delta[:, 0] * delta[:, 1]
                           + inv[:, 2] * delta[:, 1] ** 2)
            ahead = mu_local[j, 2] - p_local[q, 2] + (gain[j] * delta).sum(-1)
            alpha = (opacities.double()[j] * torch.exp(-0.5 * mahalanobis)).clamp(max=ALPHA_MAX)
            counted = (alpha >= ALPHA_MIN) & (ahead > 0) & (j != exclude[q])
            log_t[:, k].index_add_(0, q[counted], torch.log1p(-alpha[counted]))
            start = stop
    return torch.exp(optical_depth_gain * log_t).to(origins.dtype)


@torch.no_grad()
def bake_visibility(means: Tensor, quats: Tensor, scales: Tensor,  # [N, 3], [N, 4], [N, 3] activated
                    opacities: Tensor,  # [N] activated
                    directions: Tensor,  # [D, 3]
                    offset: float,  # eps in scene units
                    grid_cells: int = 256, max_pairs: int = 4_000_000,
                    offset_sigmas: float = 0.0, optical_depth_gain: float = 1.0) -> Tensor:  # [N, D]
    """``V_ik`` of the module doc: rays from every Gaussian's centre, off its surface by
    ``offset + offset_sigmas * s_i,min``, occluders sharpened by ``optical_depth_gain`` (module doc)."""
    normals = shortest_axes(quats, scales)
    shift = offset + offset_sigmas * scales.min(-1).values[:, None]
    return trace_transmittance(means, shift * normals, means, quats, scales, opacities, directions,
                               exclude=torch.arange(means.shape[0]), grid_cells=grid_cells, max_pairs=max_pairs,
                               optical_depth_gain=optical_depth_gain)


@dataclass
class LightBins:
    """The light gathered onto the visibility directions: ``B_k`` [D, 3] (radiance x solid angle) and the
    radiance-weighted mean direction ``b_k`` [D, 3] of each direction's cube texels."""
    power: Tensor
    directions: Tensor


def light_bins(faces: Tensor,  # [6, R, R, 3] linear radiance
               directions: Tensor,  # [D, 3]
               ) -> LightBins:
    """Each cube texel goes to its nearest direction ``d_k`` (module doc)."""
    resolution = faces.shape[1]
    texels = texel_directions(resolution, faces.dtype).to(faces.device).reshape(-1, 3)
    weights = texel_solid_angles(resolution, faces.dtype).to(faces.device).reshape(-1, 1)
    nearest = (texels @ directions.T).argmax(-1)
    radiance = faces.reshape(-1, 3) * weights  # [T, 3]
    power = torch.zeros(directions.shape[0], 3, dtype=faces.dtype, device=faces.device).index_add(0, nearest, radiance)
    luminance = radiance.mean(-1, keepdim=True).detach()
    mean_dir = torch.zeros_like(directions).index_add(0, nearest, luminance * texels)
    empty = mean_dir.norm(dim=-1, keepdim=True) < 1e-12
    mean_dir = torch.where(empty, directions, torch.nn.functional.normalize(mean_dir, dim=-1))
    return LightBins(power, mean_dir)


def occluded_irradiance(visibility: Tensor,  # [N, D]
                        normals: Tensor,  # [N, 3] unit
                        bins: LightBins,
                        ) -> Tensor:  # [N, 3]
    """``E_blocked,i = sum_k (1 - V_ik) B_k max(0, n_i . b_k)``."""
    cosine = (normals @ bins.directions.T).clamp(min=0.0)  # [N, D]
    return ((1.0 - visibility) * cosine) @ bins.power


def specular_visibility(visibility: Tensor,  # [N, D]
                        reflected: Tensor,  # [N, 3] unit reflection directions
                        roughness: Tensor,  # [N, 1]
                        directions: Tensor,  # [D, 3]
                        sharpness_max: float,
                        ) -> Tensor:  # [N, 1]
    """``V_spec,i``: V averaged over a lobe around the reflected direction (module doc)."""
    kappa = (2.0 / roughness.clamp(min=1e-3) ** 4).clamp(max=sharpness_max)  # [N, 1]
    logits = kappa * (reflected @ directions.T - 1.0)
    weights = torch.softmax(logits, dim=-1)
    return (weights * visibility).sum(-1, keepdim=True)


__all__ = ["VisibilityConfig", "fibonacci_directions", "trace_transmittance", "bake_visibility", "LightBins",
           "light_bins", "occluded_irradiance", "specular_visibility"]
