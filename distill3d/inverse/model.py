"""The physical model on Gaussians: per-Gaussian materials, a learned light, and a radiance fallback.

Each Gaussian carries, besides its geometry and radiance (SH) colour, raw material channels
(``Gaussians`` extras, activated here):

    albedo    = sigmoid(a_raw)                      [N, 3] linear base colour
    roughness = r_min + (1 - r_min) sigmoid(r_raw)   [N, 1]
    metallic  = sigmoid(m_raw)                      [N, 1]
    progress  = sigmoid(p_raw)                      [N, 1] how much the physical model explains
    normal    = shortest axis facing the camera (+ residual)   (``normals.py``)

One rasterizer pass renders the radiance image ``I_rad`` (SH colour, over the background) and the
material / progress / normal maps as feature channels; deferred shading (``shading.py``) of the
normalised maps (divided by the coverage A) gives the physical image, tone-mapped and composited
over the background:

    I_phys = A srgb(shade(maps, light)) + (1 - A) bg,     I = alpha_p I_phys + (1 - alpha_p) I_rad

with ``alpha_p`` the progress map (``ModelConfig.progress == "one"`` fixes it to 1: no fallback).

With ``ModelConfig.visibility.enabled``, :meth:`PRDModel.bake_visibility` traces each Gaussian's
visibility of the environment (``visibility.py``; a buffer ``[N, D]`` saved with the model) and the same
pass splats, per Gaussian, the irradiance its occluders remove under the light being rendered and its
specular visibility; shading subtracts and multiplies them. With ``config.init.albedo_deshadow`` the bake
also divides the shadowing of the initial light out of the initial albedo (:meth:`PRDModel.deshadow_albedo`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill3d.data import Scene
from distill3d.data.colorspace import linear_to_srgb, srgb_to_linear
from distill3d.gaussians import SH_C0, STANDARD_KEYS, Gaussians
from distill3d.render import rasterize

from .brdf_lut import brdf_lut
from .config import ModelConfig
from .cubemap import EnvironmentMap
from .normals import camera_facing_signs, gaussian_normals, pixel_view_directions, shortest_axes
from .shading import PreparedLight, prepare_light, reflect, shade
from .visibility import bake_visibility, fibonacci_directions, occluded_irradiance, specular_visibility

MATERIAL_CHANNELS = {"albedo": 3, "roughness": 1, "metallic": 1, "progress": 1}
COVERAGE_EPS = 1e-4  # coverage below which a pixel's maps are not normalised (empty pixels)
LOGIT_CLAMP = 1e-4  # keeps logits of initial values finite


def _pixels(x: Tensor) -> Tensor:  # [H, W, C] -> [HW, C]
    return x.reshape(-1, x.shape[-1])


def _channels_first(x: Tensor) -> Tensor:  # [H, W, C] -> [C, H, W]
    return x.permute(2, 0, 1)


def _logit(p: Tensor | float) -> Tensor:
    p = torch.as_tensor(p, dtype=torch.float32).clamp(LOGIT_CLAMP, 1.0 - LOGIT_CLAMP)
    return torch.log(p / (1.0 - p))


@dataclass
class GBuffer:
    """The maps of one view before shading, ``[H, W, C]``; materials are divided by the coverage."""
    radiance: Tensor  # [H, W, 3] I_rad (sRGB, over the background)
    coverage: Tensor  # [H, W, 1] A
    albedo: Tensor  # [H, W, 3] linear
    roughness: Tensor  # [H, W, 1]
    metallic: Tensor  # [H, W, 1]
    progress: Tensor  # [H, W, 1] alpha_p (1 with ModelConfig.progress == "one")
    normals: Tensor  # [H, W, 3] world-space unit normals (0 where empty)
    meta: dict
    occluded: Tensor | None = None  # [H, W, 3] irradiance removed by occluders under ``light`` (visibility)
    specular_visibility: Tensor | None = None  # [H, W, 1]
    light: PreparedLight | None = None  # the light ``occluded`` was computed for

    def swapped(self, where: Tensor,  # [H, W, 1] bool
                **maps: Tensor,  # name -> [H, W, C]
                ) -> "GBuffer":
        """A copy with the given maps taken from ``maps`` at ``where`` (e.g. ground truth on objects)."""
        return dataclasses.replace(self, **{name: torch.where(where, value, getattr(self, name))
                                            for name, value in maps.items()})


@dataclass
class PRDRender:
    image: Tensor  # [3, H, W] the blended image (sRGB)
    physical: Tensor  # [3, H, W] I_phys (sRGB, over the background)
    radiance: Tensor  # [3, H, W] I_rad
    progress: Tensor  # [1, H, W] alpha_p
    coverage: Tensor  # [1, H, W] A
    albedo: Tensor  # [3, H, W] linear (normalised by coverage)
    roughness: Tensor  # [1, H, W]
    metallic: Tensor  # [1, H, W]
    normals: Tensor  # [3, H, W] world-space unit normals (0 where empty)
    diffuse: Tensor  # [3, H, W] linear shading terms
    specular: Tensor  # [3, H, W]
    meta: dict


class PRDModel(nn.Module):
    """Gaussians with material extras (``MATERIAL_CHANNELS``, optional ``normal_residual``) + a light."""

    def __init__(self, gaussians: Gaussians, config: ModelConfig = ModelConfig(),
                 light: EnvironmentMap | None = None, visibility: Tensor | None = None):
        super().__init__()
        wanted = dict(MATERIAL_CHANNELS, **({"normal_residual": 3} if config.normal_residual else {}))
        for name, width in wanted.items():
            if name not in gaussians.params or gaussians.params[name].shape[1] != width:
                raise ValueError(f"gaussians need a {width}-wide {name!r} channel group (see PRDModel.from_radiance)")
        self.gaussians = gaussians
        self.config = config
        self.light = light if light is not None else EnvironmentMap(config.env_resolution, config.init.light)
        self.register_buffer("brdf_table", brdf_lut(config.brdf_lut).clone(), persistent=False)
        # baked V [N, D] (float16), empty until bake_visibility; saved with the model
        self.register_buffer("visibility", visibility if visibility is not None else torch.zeros(0, 0, dtype=torch.float16))
        self.register_buffer("visibility_directions", fibonacci_directions(config.visibility.num_directions),
                             persistent=False)

    @classmethod
    def from_radiance(cls, radiance: Gaussians, config: ModelConfig = ModelConfig()) -> "PRDModel":
        """Starts from a trained radiance field: its geometry and SH, albedo = its linear base colour
        (or ``config.init.albedo``), the other materials and the light at ``config.init``. Extra groups
        (e.g. features) are dropped."""
        p = radiance.params
        n = len(radiance)
        init = config.init
        if init.albedo is None:
            base_color = srgb_to_linear((0.5 + SH_C0 * p["sh0"][:, 0]).detach().clamp(0.0, 1.0))
        else:
            base_color = torch.full((n, 3), float(init.albedo))
        r = (init.roughness - config.min_roughness) / (1.0 - config.min_roughness)
        extras = {
            "albedo": _logit(base_color),
            "roughness": _logit(r).expand(n, 1),
            "metallic": _logit(init.metallic).expand(n, 1),
            "progress": _logit(init.progress).expand(n, 1),
        }
        if config.normal_residual:
            extras["normal_residual"] = torch.zeros(n, 3)
        gaussians = Gaussians(**{k: p[k].detach() for k in STANDARD_KEYS}, extras=extras)
        return cls(gaussians, config)

    @classmethod
    def from_state(cls, config: ModelConfig, state: dict[str, Tensor]) -> "PRDModel":
        """Rebuilds a model saved as ``state_dict()`` (any number of Gaussians)."""
        prefix = "gaussians.params."
        params = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        visibility = state.get("visibility", torch.zeros(0, 0, dtype=torch.float16))  # absent before visibility
        model = cls(Gaussians.from_params(params), config,
                    EnvironmentMap(state["light.log_radiance"].shape[1]), visibility=visibility.clone())
        model.load_state_dict({**state, "visibility": visibility})
        return model

    @property
    def uses_visibility(self) -> bool:
        return self.config.visibility.enabled and self.visibility.shape[0] == len(self.gaussians)

    @torch.no_grad()
    def bake_visibility(self, scene_scale: float, cameras: Scene | None = None) -> Tensor:
        """Traces ``V`` [N, D] of the current Gaussians (``visibility.bake_visibility``) and keeps it; with
        ``config.init.albedo_deshadow`` (and the albedo from the radiance colour) then divides the shadows out
        of the initial albedo (:meth:`deshadow_albedo`, which takes the training ``cameras``). The trainers
        bake once, right after :meth:`from_radiance`."""
        g, cfg = self.gaussians, self.config.visibility
        deshadow = self.config.init.albedo_deshadow and self.config.init.albedo is None and cfg.enabled
        if deshadow:
            self._check_deshadow_cameras(cameras)  # before the trace, not after it
        self.visibility = bake_visibility(g.means.detach(), g.quats.detach(), g.activated_scales.detach(),
                                          g.activated_opacities.detach(), self.visibility_directions,
                                          cfg.ray_offset * scene_scale, cfg.grid_cells, cfg.max_pairs,
                                          offset_sigmas=cfg.ray_offset_sigmas,
                                          optical_depth_gain=cfg.optical_depth_gain).half()
        if deshadow and self.uses_visibility:
            self.deshadow_albedo(cameras)
        return self.visibility

    @torch.no_grad()
    def deshadow_albedo(self, cameras: Scene | None = None) -> Tensor:  # [N, 3]
        """Divides each Gaussian's albedo by the shadowing of the model's light (when the trainers bake: the
        initial one) through the baked visibility (GS-IR / R3DG-style initialisation from a radiance colour
        that has the photos' shadows in it):

            albedo_i <- clamp(albedo_i / max(S_vis,i / S_open,i, s_min), 0, 1)   per channel

        with ``S_vis`` / ``S_open`` the diffuse shading (``shading.shade``, white albedo, not metallic) at the
        normal ``n_i`` with / without the irradiance its occluders remove, and ``s_min`` =
        ``config.init.albedo_deshadow_floor``. For the initial uniform light the ratio is the cosine-weighted
        visible fraction of the hemisphere of ``n_i`` (ambient occlusion). ``n_i = s_i a_i``: the shortest axis
        ``a_i`` (``normals.shortest_axes``; the residual is 0 at initialisation) on the side ``s_i`` of
        ``config.init.albedo_deshadow_side``:

        - ``"cameras"``: the side the training ``cameras`` that see the Gaussian are on
          (``normals.camera_facing_signs``), the normal the renderer gives it in the photos;
        - ``"light"``: the side whose ``S_vis`` is larger (needs no cameras, but a receiver in cast shadow
          whose thin surface lets light through from behind takes its back side and keeps its shadow).

        Args:
            cameras: the training views (``viewmats``, ``Ks``, ``width``, ``height``); needed by ``"cameras"``.

        Returns the new albedo ``[N, 3]``."""
        if not self.uses_visibility:
            raise ValueError("deshadow_albedo needs the baked visibility (config.visibility.enabled and bake_visibility)")
        self._check_deshadow_cameras(cameras)
        side = self.config.init.albedo_deshadow_side
        g = self.gaussians
        light = self.prepare_light()
        visibility = self.visibility.float()
        axes = shortest_axes(g.quats, g.activated_scales)
        white = torch.ones_like(g.means)
        dielectric = torch.zeros_like(g.means[:, :1])

        def diffuse(normals: Tensor, occluded: Tensor | None) -> Tensor:  # [N, 3] shading of a white albedo
            return shade(normals, normals, white, torch.ones_like(dielectric), dielectric, light, self.brdf_table,
                         occluded).diffuse

        if side == "cameras":
            normals = axes * camera_facing_signs(g.means, axes, cameras.viewmats, cameras.Ks, cameras.width,
                                                 cameras.height)[:, None]
        else:
            lit = torch.stack([diffuse(n, occluded_irradiance(visibility, n, light.bins)).mean(-1) for n in (axes, -axes)])
            normals = torch.where((lit[1] > lit[0])[:, None], -axes, axes)
        shadowed = diffuse(normals, occluded_irradiance(visibility, normals, light.bins))
        ratio = shadowed / diffuse(normals, None).clamp(min=1e-12)
        albedo = (self.albedo() / ratio.clamp(min=self.config.init.albedo_deshadow_floor)).clamp(0.0, 1.0)
        g.params["albedo"].copy_(_logit(albedo))
        return self.albedo()

    def _check_deshadow_cameras(self, cameras: Scene | None) -> None:
        if self.config.init.albedo_deshadow_side == "cameras" and cameras is None:
            raise ValueError("model.init.albedo_deshadow_side 'cameras' needs the training cameras: "
                             "bake_visibility(scene_scale, cameras=train_scene)")

    # ---- activated per-Gaussian materials ------------------------------------------------------------
    def albedo(self) -> Tensor:
        return torch.sigmoid(self.gaussians.params["albedo"])

    def roughness(self) -> Tensor:
        r_min = self.config.min_roughness
        return r_min + (1.0 - r_min) * torch.sigmoid(self.gaussians.params["roughness"])

    def metallic(self) -> Tensor:
        return torch.sigmoid(self.gaussians.params["metallic"])

    def progress(self) -> Tensor:
        return torch.sigmoid(self.gaussians.params["progress"])

    def prepare_light(self, light: EnvironmentMap | None = None) -> PreparedLight:
        """SH + pre-filtered levels of ``light`` (default: the learned one), and its light on the visibility
        directions when the model shades with visibility."""
        directions = self.visibility_directions if self.uses_visibility else None
        return prepare_light((light or self.light).radiance(), self.config.prefilter, directions)

    # ---- rendering ------------------------------------------------------------------------------------
    def gbuffer(self, viewmat: Tensor,  # [4, 4]
                K: Tensor,  # [3, 3]
                width: int, height: int, background: Tensor,  # [3]
                *, light: PreparedLight | None = None, sh_degree: int | None = None, backend: str = "auto") -> GBuffer:
        """The rasterizer pass of one view: radiance image and material / progress / normal maps
        (normals face this camera); with visibility, also the occluded irradiance under ``light``
        (default: the learned light) and the specular visibility."""
        g = self.gaussians
        if self.uses_visibility and light is None:
            light = self.prepare_light()
        features = self.gaussian_channels(torch.linalg.inv(viewmat)[:3, 3], light)
        rendered, maps, coverage, meta = rasterize(
            g.means, g.quats, g.activated_scales, g.activated_opacities, g.sh_coeffs, viewmat[None], K[None],
            width, height, features=features, sh_degree=self.render_sh_degree(sh_degree), backgrounds=background[None],
            feature_grad_to_geometry=self.config.material_grad_to_geometry, backend=backend)
        return self.gbuffer_from_maps(rendered[0], maps[0], coverage[0], meta, light)

    def render_sh_degree(self, sh_degree: int | None = None) -> int:
        """The SH degree a render uses: ``sh_degree`` capped at the Gaussians' (``None``: theirs)."""
        g = self.gaussians
        return g.sh_degree if sh_degree is None else min(sh_degree, g.sh_degree)

    def gaussian_channels(self, camera_center: Tensor,  # [3]
                          light: PreparedLight | None = None) -> Tensor:
        """The feature channels the rasterizer splats for a camera at ``camera_center``, per Gaussian
        ``[N, F]``: albedo (3) | roughness | metallic | progress | normal facing the camera (3), and with
        visibility the irradiance occluders remove under ``light`` (3) | specular visibility (1)."""
        g = self.gaussians
        residual = g.params["normal_residual"] if self.config.normal_residual else None
        normals = gaussian_normals(g.means, g.quats, g.activated_scales, camera_center, residual)
        roughness = self.roughness()
        features = [self.albedo(), roughness, self.metallic(), self.progress(), normals]
        if self.uses_visibility:
            visibility = self.visibility.float()
            view_dirs = F.normalize(camera_center - g.means, dim=-1)
            features += [occluded_irradiance(visibility, normals, light.bins),
                         specular_visibility(visibility, reflect(view_dirs, normals), roughness,
                                             self.visibility_directions, self.config.visibility.specular_sharpness_max)]
        return torch.cat(features, dim=-1)

    def gbuffer_from_maps(self, radiance: Tensor,  # [H, W, 3]
                          maps: Tensor,  # [H, W, F] the splatted gaussian_channels
                          coverage: Tensor,  # [H, W, 1]
                          meta: dict, light: PreparedLight | None = None) -> GBuffer:
        """The G-buffer of one rendered view: maps normalised by the coverage (``light``: the one the
        occluded irradiance was splatted for)."""
        covered = coverage.clamp(min=COVERAGE_EPS)
        if self.config.progress == "one":
            progress = torch.ones_like(coverage)
        else:
            progress = (maps[..., 5:6] / covered).clamp(0.0, 1.0)
        shadowing = {}
        if self.uses_visibility:
            shadowing = dict(occluded=maps[..., 9:12] / covered, specular_visibility=(maps[..., 12:13] / covered).clamp(0, 1),
                             light=light)
        return GBuffer(radiance=radiance, coverage=coverage, albedo=maps[..., 0:3] / covered,
                       roughness=maps[..., 3:4] / covered, metallic=maps[..., 4:5] / covered, progress=progress,
                       normals=F.normalize(maps[..., 6:9], dim=-1), meta=meta, **shadowing)

    def shade_gbuffer(self, gbuffer: GBuffer, viewmat: Tensor,  # [4, 4]
                      K: Tensor,  # [3, 3]
                      background: Tensor,  # [3]
                      *, light: PreparedLight | None = None) -> PRDRender:
        """Deferred shading of a G-buffer under ``light`` (default: the G-buffer's light if it has one, else
        the learned light) and the blend. A G-buffer with occluded irradiance is shaded only under the
        light it was made for (:meth:`gbuffer`'s ``light``)."""
        height, width = gbuffer.coverage.shape[:2]
        if gbuffer.occluded is not None:
            if light is not None and light is not gbuffer.light:
                raise ValueError("this G-buffer's occluded irradiance belongs to another light: build it with "
                                 "gbuffer(..., light=light)")
            light = gbuffer.light
        light = light if light is not None else self.prepare_light()
        view_dirs = pixel_view_directions(viewmat, K, width, height)
        occluded = _pixels(gbuffer.occluded) if gbuffer.occluded is not None else None
        spec_vis = _pixels(gbuffer.specular_visibility) if gbuffer.specular_visibility is not None else None
        shading = shade(_pixels(gbuffer.normals), _pixels(view_dirs), _pixels(gbuffer.albedo).clamp(0, 1),
                        _pixels(gbuffer.roughness).clamp(self.config.min_roughness, 1),
                        _pixels(gbuffer.metallic).clamp(0, 1), light, self.brdf_table, occluded, spec_vis)
        srgb = linear_to_srgb(shading.radiance).reshape(height, width, 3)
        coverage, progress = gbuffer.coverage, gbuffer.progress
        physical = coverage * srgb + (1.0 - coverage) * background
        image = progress * physical + (1.0 - progress) * gbuffer.radiance
        chw = _channels_first
        return PRDRender(
            image=chw(image), physical=chw(physical), radiance=chw(gbuffer.radiance), progress=chw(progress),
            coverage=chw(coverage), albedo=chw(gbuffer.albedo), roughness=chw(gbuffer.roughness),
            metallic=chw(gbuffer.metallic), normals=chw(gbuffer.normals),
            diffuse=chw(shading.diffuse.reshape(height, width, 3)),
            specular=chw(shading.specular.reshape(height, width, 3)), meta=gbuffer.meta)

    def render(self, viewmat: Tensor,  # [4, 4]
               K: Tensor,  # [3, 3]
               width: int, height: int, background: Tensor,  # [3]
               *, light: PreparedLight | None = None, sh_degree: int | None = None,
               backend: str = "auto") -> PRDRender:
        """Renders one view (normals face this camera) under ``light`` (default: the learned light)."""
        if self.uses_visibility and light is None:
            light = self.prepare_light()
        gbuffer = self.gbuffer(viewmat, K, width, height, background, light=light, sh_degree=sh_degree, backend=backend)
        return self.shade_gbuffer(gbuffer, viewmat, K, background, light=light)

    # ---- groups of parameters ---------------------------------------------------------------------------
    def group_parameters(self, group: str) -> dict[str, nn.Parameter]:
        """name -> parameter of a training group (``config.GROUPS``)."""
        p = self.gaussians.params
        members = {"geometry": ("means", "quats", "scales", "opacities"), "radiance": ("sh0", "shN")}.get(group, (group,))
        if group == "light":
            return {"light": self.light.log_radiance}
        return {name: p[name] for name in members if name in p}


def light_regularizer(light: EnvironmentMap) -> Tensor:
    """nvdiffrec's neutral-light prior: mean over texels of ``|L_c - mean_c L|``."""
    radiance = light.radiance()
    return (radiance - radiance.mean(dim=-1, keepdim=True)).abs().mean()


__all__ = ["PRDModel", "PRDRender", "GBuffer", "MATERIAL_CHANNELS", "light_regularizer"]
