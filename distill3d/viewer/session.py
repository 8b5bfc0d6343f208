"""`ViewerSession`: everything the viewer server shows, as plain Python calls (notebooks, tests).

The server (``server.py``) only turns browser events into these calls and sends the frames back:

* ``render(camera, mode)``: one frame of a mode (``modes.py``) with our rasterizer, the selection
  highlighted when there is one;
* ``click_segment(camera, x, y, threshold)`` / ``box_segment(camera, box, threshold)``: segmentation by
  cosine similarity to the feature at a pixel / the mean feature in a box (``distill3d.query``); the
  query then follows the camera: every later frame is masked by ``cos(F(p), q) >= threshold``;
* ``edit(action, out)``: extract / delete / recolor the Gaussians with ``cos(f_i, q) >= threshold``
  (``distill3d.query.edit``), written as a new PLY;
* ``set_environment(env)``: relight a PRD run (``distill3d.inverse.relight``);
* ``training_cameras()``: the scene's training views, to snap the camera to.

The feature PCA colour map is fitted once per field, on the per-Gaussian features (so every view and
every frame uses the same colours); rendered features are divided by the coverage before projection
(``F(p) / A(p)`` is a convex combination of Gaussian features, where the PCA was fitted) and the colour
is multiplied by the coverage again, which fades empty pixels to black. A decoder field's "decoder output"
mode decodes the normalised map, ``W F(p) / A(p) + b``, with the projection folded into its ``D_low``
channels, so no ``D``-channel map is written.
"""
from __future__ import annotations

import pathlib
import threading
import time
from dataclasses import dataclass, field as dataclass_field

import numpy as np
import torch
from torch import Tensor

from distill3d.render import rasterize

from .camera import ViewerCamera
from .images import OverlayConfig, colorize_depth, gray, overlay_mask
from .modes import MODE_NAMES, mode_availability
from .source import ViewerSource, load_source

COVERAGE_EPS = 1e-4  # below this coverage a pixel's features are not normalised (empty pixels)
EDIT_ACTIONS = ("extract", "delete", "recolor")


@dataclass
class SessionConfig:
    """How a session renders."""
    backend: str = "native"  # rasterizer backend: native (C++/OpenMP on CPU, CUDA on GPU), torch, gsplat, auto
    device: str = "cpu"  # torch device the model is moved to
    threshold: float = 0.8  # default cosine-similarity threshold of a new selection
    overlay: OverlayConfig = dataclass_field(default_factory=OverlayConfig)


@dataclass
class Frame:
    """A rendered frame: ``image [H, W, 3]`` uint8, the mode and camera it shows, render ``seconds``."""
    image: np.ndarray
    mode: str
    camera: ViewerCamera
    seconds: float


@dataclass
class Selection:
    """A feature query and what it selects.

    Shapes:
        query: ``[D]`` (teacher space); mask: ``[H, W]`` bool on ``camera`` (where the query was made, or
        the camera of the last threshold change);
        gaussians: ``[N]`` bool.
    """
    query: Tensor
    threshold: float
    mask: Tensor
    gaussians: Tensor
    camera: ViewerCamera  # the view ``mask`` is on

    @property
    def num_gaussians(self) -> int:
        return int(self.gaussians.sum())


def _to_uint8(image: Tensor) -> np.ndarray:
    from distill3d.fields.render_cli import _to_uint8 as to_uint8

    return to_uint8(image)


class ViewerSession:
    """Renders, segments, edits and relights one loaded model (:class:`~distill3d.viewer.source.ViewerSource`).

    Args:
        source: what to show (:func:`~distill3d.viewer.source.load_source`).
        config: backend, device, default threshold, overlay colour.

    Thread-safe: the server calls it from one render thread per browser and from panel callbacks.
    """

    def __init__(self, source: ViewerSource, config: SessionConfig | None = None):
        from distill3d.render.rasterize import resolve_backend

        self.config = config or SessionConfig()
        self.backend = resolve_backend(self.config.backend, self.config.device)  # unavailable: fails now
        self.device = torch.device(self.config.device)
        self.source = source
        self.background = source.background.to(self.device)
        self.field = source.field.to(self.device).eval() if source.field is not None else None
        self.prd = source.prd.to(self.device).eval() if source.prd is not None else None
        self.gaussians = self.field.gaussians if self.field is not None else (
            self.prd.gaussians if self.prd is not None else source.gaussians.to(self.device))
        self.selection: Selection | None = None
        self._pca: dict[str, object] = {}
        self._light = None  # PRD light override (prepared), None: the learned light
        self.environment_name = "learned"
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: str | pathlib.Path, scene: str | pathlib.Path | None = None, background: str = "auto",
             config: SessionConfig | None = None) -> "ViewerSession":
        """A session on ``path`` (a run folder, PLY or checkpoint; see :func:`load_source`)."""
        return cls(load_source(path, scene, background), config)

    # ---- what is available ---------------------------------------------------------------------------
    @property
    def availability(self) -> dict[str, str | None]:
        """mode -> None if it can be shown, else why not."""
        return mode_availability(self.field is not None, self.field is not None and self.field.decoder is not None,
                                 self.prd is not None)

    @property
    def modes(self) -> list[str]:
        return [name for name, why in self.availability.items() if why is None]

    @property
    def notes(self) -> list[str]:
        return list(self.source.notes)

    @property
    def can_segment(self) -> bool:
        return self.field is not None

    def training_cameras(self) -> list[ViewerCamera]:
        """The scene's training views (empty when no scene is known)."""
        scene = self.source.scene
        return [] if scene is None else [ViewerCamera.from_scene(scene, i) for i in range(scene.num_views)]

    # ---- rendering ----------------------------------------------------------------------------------
    def _check_mode(self, mode: str) -> None:
        if mode not in MODE_NAMES:
            raise ValueError(f"mode must be one of {MODE_NAMES}, got {mode!r}")
        why = self.availability[mode]
        if why is not None:
            raise ValueError(f"mode {mode!r} is not available: {why}")

    def _cam(self, camera: ViewerCamera) -> tuple[Tensor, Tensor]:
        return camera.viewmat.to(self.device), camera.K.to(self.device)

    def _field_pass(self, camera: ViewerCamera, with_features: bool):
        """RGB ``[3, H, W]``, alpha ``[1, H, W]`` and the rendered (not decoded) features ``[F, H, W]`` or None."""
        viewmat, K = self._cam(camera)
        if self.field is not None:
            out = self.field.render(viewmat[None], K[None], camera.width, camera.height, background=self.background,
                                    with_features=with_features, decode=False, backend=self.backend)
            return out.rgb[0], out.alpha[0], out.features[0] if out.features is not None else None
        g = self.gaussians
        rgb, _, alpha, _ = rasterize(g.means, g.quats, g.activated_scales, g.activated_opacities, g.sh_coeffs,
                                     viewmat[None], K[None], camera.width, camera.height, sh_degree=g.sh_degree,
                                     backgrounds=self.background[None], backend=self.backend)
        return rgb[0].permute(2, 0, 1), alpha[0].permute(2, 0, 1), None

    def _decode(self, features: Tensor) -> Tensor:
        """Rendered features ``[F, H, W]`` -> teacher space ``[D, H, W]`` (the decoder, when the field has one)."""
        return self.field.decoder(features[None])[0] if self.field.decoder is not None else features

    def _pca_colors(self, kind: str, features: Tensor, alpha: Tensor) -> Tensor:
        from distill3d.teachers import fit_pca

        if kind not in self._pca:  # fitted once per field, on the per-Gaussian features (module doc)
            rows = self.field.gaussian_features() if kind == "decoder_pca" else self.field.gaussians.features
            self._pca[kind] = fit_pca(rows.detach().float().T[:, :, None].cpu())
        pca = self._pca[kind]
        normalised = features / alpha.clamp_min(COVERAGE_EPS)
        if kind != "decoder_pca":
            return pca(normalised.cpu()).to(alpha) * alpha
        # Decoded after the normalisation, W (F / A) + b: a convex combination of the decoded Gaussian features the
        # PCA was fitted on (decoding first would weight b by 1 / A). The principal coordinates fold into D_low
        # (fields.decoder module doc), (W g + b - mu) C^T = g (C W)^T + C b - mu C^T, so a frame never writes the
        # D-channel map (at 512^2 and D = 112 that map alone is 117 MB).
        components = pca.components.to(features)
        folded, offset = self.field.decoder.fold_queries(components)  # [D_low, 3], [3]
        low_dim, height, width = normalised.shape
        rows = torch.addmm(offset - components @ pca.mean.to(features), normalised.reshape(low_dim, -1).T, folded)
        return pca.colors(rows.T.reshape(3, height, width).cpu()).to(alpha) * alpha

    def _depth(self, camera: ViewerCamera) -> Tensor:
        viewmat, K = self._cam(camera)
        g = self.gaussians
        render, _, alpha, _ = rasterize(g.means, g.quats, g.activated_scales, g.activated_opacities, g.sh_coeffs,
                                        viewmat[None], K[None], camera.width, camera.height, sh_degree=g.sh_degree,
                                        backgrounds=self.background[None],
                                        render_mode="RGB+ED", backend=self.backend)
        return colorize_depth(render[0, ..., 3:].permute(2, 0, 1).cpu(), alpha[0].permute(2, 0, 1).cpu(),
                              self.background.cpu())

    def _prd_image(self, camera: ViewerCamera, mode: str) -> Tensor:
        from distill3d.data.colorspace import linear_to_srgb

        viewmat, K = self._cam(camera)
        out = self.prd.render(viewmat, K, camera.width, camera.height, self.background, light=self._light,
                              backend=self.backend)
        maps = {"prd_image": lambda: out.image, "physical": lambda: out.physical, "progress": lambda: gray(out.progress),
                "albedo": lambda: linear_to_srgb(out.albedo), "roughness": lambda: gray(out.roughness),
                "metallic": lambda: gray(out.metallic), "normal": lambda: out.normals * 0.5 + 0.5}
        return maps[mode]()

    @torch.no_grad()
    def render_tensor(self, camera: ViewerCamera, mode: str = "rgb", overlay: bool = True) -> Tensor:
        """The frame of ``mode`` at ``camera`` as ``[3, H, W]`` in [0, 1] (the selection highlighted in the
        RGB and feature modes when ``overlay``)."""
        self._check_mode(mode)
        with self._lock:
            if mode == "depth":
                return self._depth(camera)
            if mode in ("rgb", "feature_pca", "decoder_pca"):
                selection = self.selection if overlay else None
                rgb, alpha, features = self._field_pass(camera, mode != "rgb" or selection is not None)
                if mode == "rgb":
                    image = rgb
                else:  # feature_pca, decoder_pca: both from the rendered (not decoded) features
                    image = self._pca_colors(mode, features, alpha)
                if selection is not None:
                    image = overlay_mask(image.clamp(0, 1), self._mask(features, selection),
                                         self.config.overlay)
                return image.clamp(0, 1).cpu()
            return self._prd_image(camera, mode).clamp(0, 1).cpu()

    def render(self, camera: ViewerCamera, mode: str = "rgb", overlay: bool = True) -> Frame:
        """One frame (:class:`Frame`, uint8) of ``mode`` at ``camera``, timed.

        Args:
            camera: the view (:class:`ViewerCamera`).
            mode: one of :attr:`modes` (``modes.MODE_NAMES``; an unavailable one raises with the reason).
            overlay: highlight the current selection.
        """
        start = time.perf_counter()
        image = _to_uint8(self.render_tensor(camera, mode, overlay))
        return Frame(image, mode, camera, time.perf_counter() - start)

    # ---- segmentation -------------------------------------------------------------------------------
    def _require_features(self) -> None:
        if self.field is None:
            raise ValueError("segmentation needs a field with trained features: " + "; ".join(self.notes or ["none loaded"]))

    def _mask(self, features: Tensor, selection: Selection) -> Tensor:
        """The selection's mask on rendered (not decoded) features: a decoder field is scored in D_low."""
        from distill3d.query import threshold_mask

        return threshold_mask(features, selection.query.to(features), selection.threshold, self.field.decoder).cpu()

    @torch.no_grad()
    def features(self, camera: ViewerCamera) -> Tensor:
        """Rendered features in the teacher's space ``[D, H, W]`` at ``camera``."""
        self._require_features()
        with self._lock:
            _, _, features = self._field_pass(camera, True)
            return self._decode(features)

    @torch.no_grad()
    def _select(self, camera: ViewerCamera, features: Tensor, query: Tensor, threshold: float | None) -> Selection:
        from distill3d.query import select_gaussians, threshold_mask

        threshold = self.config.threshold if threshold is None else float(threshold)
        mask = threshold_mask(features, query, threshold).cpu()
        gaussians = select_gaussians(self.field.gaussian_features().detach(), query, threshold).cpu()
        with self._lock:
            self.selection = Selection(query.detach(), threshold, mask, gaussians, camera)
            return self.selection

    def click_segment(self, camera: ViewerCamera, x: int, y: int, threshold: float | None = None) -> Selection:
        """Selects what matches the feature at pixel column ``x``, row ``y`` of ``camera``:
        pixels with ``cos(F(p), F(x, y)) >= threshold`` and the Gaussians with ``cos(f_i, F(x, y)) >= threshold``."""
        from distill3d.query import point_query

        features = self.features(camera)
        return self._select(camera, features, point_query(features, int(x), int(y)), threshold)

    def box_segment(self, camera: ViewerCamera, box: tuple[int, int, int, int],
                    threshold: float | None = None) -> Selection:
        """As :meth:`click_segment` with the mean feature over ``box = (x0, y0, x1, y1)`` (end exclusive)."""
        from distill3d.query import box_query

        features = self.features(camera)
        return self._select(camera, features, box_query(features, tuple(int(v) for v in box)), threshold)

    @torch.no_grad()
    def set_threshold(self, threshold: float, camera: ViewerCamera | None = None) -> Selection | None:
        """Re-thresholds the current query (the slider); the mask is recomputed on ``camera`` (default: the
        selection's own camera)."""
        from distill3d.query import select_gaussians

        from distillcore.checks import check_range

        check_range(threshold, "threshold (a cosine similarity)", -1, 1)
        self.config.threshold = float(threshold)
        with self._lock:
            if self.selection is None:
                return None
            query, camera = self.selection.query, camera or self.selection.camera
            gaussians = select_gaussians(self.field.gaussian_features().detach(), query, threshold).cpu()
            selection = Selection(query, float(threshold), self.selection.mask, gaussians, camera)
            selection.mask = self._mask(self._field_pass(camera, True)[2], selection)
            self.selection = selection
            return selection

    def clear_selection(self) -> None:
        with self._lock:
            self.selection = None

    # ---- edits --------------------------------------------------------------------------------------
    def edit(self, action: str, out: str | pathlib.Path, color: tuple[float, float, float] = (1.0, 0.0, 0.0),
             show: bool = False) -> pathlib.Path:
        """Applies ``action`` (extract / delete / recolor) to the selected Gaussians and writes the result as a
        new PLY at ``out`` (decoder beside it); ``show`` makes the session display the edited field."""
        from distillcore.runs import check_output_is_not_input

        from distill3d.query import delete, extract, recolor

        if action not in EDIT_ACTIONS:
            raise ValueError(f"action must be one of {EDIT_ACTIONS}, got {action!r}")
        self._require_features()
        with self._lock:
            if self.selection is None:
                raise ValueError("nothing selected: click a pixel or draw a box first")
            out = pathlib.Path(out)
            check_output_is_not_input(out, self.source.path, "the edit's output")
            selected = self.selection.gaussians.to(self.device)
            field = self.field.cpu() if self.device.type != "cpu" else self.field
            if action == "extract":
                edited = extract(field, selected.cpu())
            elif action == "delete":
                edited = delete(field, selected.cpu())
            else:
                edited = recolor(field, selected.cpu(), tuple(color))
            self.field = field.to(self.device)
            out.parent.mkdir(parents=True, exist_ok=True)
            path = edited.save(out)
            if show:
                self.field = edited.to(self.device).eval()
                self.gaussians = self.field.gaussians
                self.selection = None
            return path

    # ---- relighting ---------------------------------------------------------------------------------
    def set_environment(self, env) -> None:
        """Relights a PRD run: ``env`` is ``"scene"`` (the scene's second environment), a ``.hdr`` / ``.exr`` /
        ``.npz`` / ``.npy`` path, an equirectangular ``[He, We, 3]`` array, or None (the learned light)."""
        from distill3d.inverse.relight import environment_from

        if self.prd is None:
            raise ValueError("relighting needs a PRD run (distill3d inverse train)")
        with self._lock:
            if env is None:
                self._light, self.environment_name = None, "learned"
                return
            name = str(env) if isinstance(env, (str, pathlib.Path)) else "array"
            if isinstance(env, str) and env == "scene":
                if self.source.relight_environment is None:
                    raise ValueError("the scene has no second environment map: upload an .hdr / .exr")
                env = self.source.relight_environment
            light = environment_from(env, self.prd.light.resolution).to(self.device)
            self._light = self.prd.prepare_light(light)
            self.environment_name = name


__all__ = ["ViewerSession", "SessionConfig", "Frame", "Selection", "EDIT_ACTIONS"]
