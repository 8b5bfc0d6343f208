"""Feature 3DGS training: fit a Gaussian field to posed images and to a 2D teacher's feature maps.

Per step, for one training view with image ``I`` and teacher map ``T [D, h, w]``:

    R, F = render(view)                                  (RGB and features in one pass, image size)
    L = (1 - lambda) |R - I|_1 + lambda (1 - SSIM(R, I)) + w_f |resize(dec(F), (h, w)) - T|_1

``dec`` is the speed-up decoder (identity without it), started at the teacher's PCA basis of the
training maps (``decoder.init = "pca"``, see :mod:`.decoder`). The initial Gaussians are the scene's
points (``init``) plus, for photos that show the sky, a sky sphere of distant Gaussians
(``init.sky_points``, see :mod:`.background`). With ``feature_grad_to_geometry=False`` (the
paper's setting) the feature term trains only the features (and decoder); geometry follows RGB.
Densification is gsplat's ``DefaultStrategy`` on the rasterizer's ``meta``; the position learning
rate decays exponentially; the SH degree rises by one every ``sh_degree_interval`` steps.

Runs are resumable bit for bit: a checkpoint holds the field, every optimizer, the strategy's
running statistics, the step and both random states, written atomically.
"""
from __future__ import annotations

import pathlib
import time

import torch
from gsplat.strategy import DefaultStrategy
from gsplat.strategy.ops import reset_opa
from torch import Tensor
from tqdm import tqdm

from distillcore.checks import check_device, check_tensor
from distillcore.determinism import deterministic_algorithms
from distillcore.divergence import check_finite
from distillcore.feature import feature_distill_loss, resize_to
from distillcore.image import image_loss
from distillcore.runs import describe_mismatch
from distillcore.schedule import exponential_decay
from distillcore.tracking import ScalarWriter
from distillcore.serialization import load_state, save_atomic

from distill3d.data import PointInitConfig, Scene, initial_points
from distill3d.render.rasterize import resolve_backend

from .background import parse_background, recomposite, sky_sphere
from .config import TrainConfig
from .decoder import teacher_pca
from .field import FeatureField
from .metrics import feature_cosine, image_ssim, psnr

ADAM_EPS = 1e-15  # gsplat / 3DGS: tiny eps, Adam steps are not damped for small gradients
SCENE_SCALE_MARGIN = 1.1  # gsplat's simple trainer: camera-centre radius times this


def validate_inputs(train: Scene, test: Scene | None, teacher_maps: dict[str, Tensor] | None) -> int | None:
    """Every check that can fail before training starts; returns the teacher dimension D (or None).

    A field needs at least 2 posed training views; every training view needs a teacher map; maps are
    ``[D, h, w]`` with one D and a grid no finer than the image.
    """
    if train.num_views < 2:
        raise ValueError(f"the training split has {train.num_views} view(s): a 3D field needs at least 2 posed views")
    if teacher_maps is None:
        return None
    for name in train.names:
        if name not in teacher_maps:
            raise ValueError(f"no teacher feature map for training view {name!r}")
    for name, fmap in teacher_maps.items():
        check_tensor(fmap, f"teacher map of {name!r}", ndim=3, floating=True)
    dims = sorted({fmap.shape[0] for fmap in teacher_maps.values()})
    if len(dims) > 1:
        raise ValueError(f"teacher maps disagree on the channel count: {dims}")
    sizes = {name: (scene.height, scene.width) for scene in (train, test) if scene is not None for name in scene.names}
    for name, fmap in teacher_maps.items():
        if name in sizes and (fmap.shape[1] > sizes[name][0] or fmap.shape[2] > sizes[name][1]):
            raise ValueError(f"teacher map of {name!r} is {list(fmap.shape[1:])}, larger than its image "
                             f"{list(sizes[name])}: a teacher grid is never finer than the image")
    return dims[0]


def scene_scale(scene: Scene) -> float:
    """Radius of the camera centres around their mean, with a margin (gsplat's ``scene_scale``)."""
    centres = scene.camera_centers()
    return float((centres - centres.mean(0)).norm(dim=1).max()) * SCENE_SCALE_MARGIN


class Trainer:
    """Trains a :class:`FeatureField` on the ``train`` split with teacher maps ``name -> [D, h, w]``;
    ``test`` (optional) is evaluated periodically and at the end.

    ``teacher_maps=None`` or ``config.loss.feature_weight == 0`` trains plain 3DGS (the Gaussians then
    carry a 1-wide feature column that is never rendered, so every field has the same layout).
    """

    writes_reports = True  # TensorBoard curves; False on the non-zero ranks of a sharded run

    def __init__(self, train: Scene, config: TrainConfig, out_dir: str | pathlib.Path,
                 teacher_maps: dict[str, Tensor] | None = None, test: Scene | None = None,
                 name: str | None = None):
        config.validate()  # fields set after construction bypass __post_init__
        check_device(config.device)
        resolve_backend(config.backend, config.device)  # an unavailable backend fails before any work
        self.use_features = teacher_maps is not None and config.loss.feature_weight > 0
        maps = teacher_maps if self.use_features else None
        teacher_dim = validate_inputs(train, test, maps)
        if config.steps < 1:
            raise ValueError(f"steps must be >= 1, got {config.steps}")
        if config.decoder.enabled and config.decoder.low_dim < 1:
            raise ValueError(f"decoder.low_dim must be >= 1, got {config.decoder.low_dim}")
        self.train_scene, self.test_scene, self.config, self.teacher_maps = train, test, config, maps
        self.name = name or (train.root.name if train.root is not None else "scene")
        self.out_dir = pathlib.Path(out_dir)
        self.device = torch.device(config.device)
        self.generator = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed)  # gsplat's split samples with the global generator
        self.scene_scale = scene_scale(train)
        init = config.init
        points, colors = initial_points(train, PointInitConfig(init.method, init.num_points, init.random_radius,
                                                               config.seed))
        if init.sky_points:  # distant Gaussians for the sky of photos (distill3d.fields.background)
            sky_points, sky_colors = sky_sphere(train, init.sky_points, init.sky_radius)
            points, colors = torch.cat([points, sky_points]), torch.cat([colors, sky_colors])
        low_dim = config.decoder.low_dim if (config.decoder.enabled and self.use_features) else None
        self.field = FeatureField.from_points(points, colors, config.sh_degree, teacher_dim or 1, init,
                                              low_dim).to(self.device)
        if low_dim is not None and config.decoder.init == "pca":
            self.field.decoder.init_pca(*(t.to(self.device) for t in teacher_pca(
                [maps[name] for name in train.names], low_dim)))
        self.step = 0
        self.checkpoint_step: int | None = None  # step of the last checkpoint written or resumed
        self.history: list[dict] = []
        self.total_train_seconds = 0.0  # over every run of this field: a resumed run adds its time
        # inputs' fingerprint (distillcore.runs), stored in checkpoints; resume refuses another one
        self.fingerprint: dict | None = None
        self.background_mode = parse_background(config.background)
        if self.background_mode == "random" and train.alphas is None:
            raise ValueError("background 'random' needs images with alpha (RGBA) to re-composite the targets; "
                             "for photos use a colour (white, black, R,G,B) or 'learned'")
        # "learned": one colour, optimised with the field at the DC colour's learning rate
        self.learned_background = (torch.nn.Parameter(train.background.to(self.device, torch.float32).clone())
                                   if self.background_mode == "learned" else None)
        self._build_optimizers()
        d = config.densify
        self.strategy = DefaultStrategy(
            prune_opa=d.prune_opa, grow_grad2d=d.grow_grad2d, grow_scale3d=d.grow_scale3d,
            prune_scale3d=d.prune_scale3d, refine_start_iter=d.refine_start_iter,
            refine_stop_iter=d.refine_stop_iter if d.enabled else 0, refine_every=d.refine_every,
            reset_every=d.reset_every, absgrad=d.absgrad)
        self.strategy.check_sanity(self.field.splats, self.optimizers)
        self.strategy_state = self.strategy.initialize_state(scene_scale=self.scene_scale)

    # ----------------------------------------------------------------------------------- set-up
    def _build_optimizers(self) -> None:
        o = self.config.optim
        lrs = {"means": o.means_lr_init * self.scene_scale, "scales": o.scales_lr, "quats": o.quats_lr,
               "opacities": o.opacities_lr, "sh0": o.sh0_lr, "shN": o.shN_lr, "features": o.features_lr}
        self.optimizers = {
            name: torch.optim.Adam([{"params": p, "lr": lrs[name], "name": name}], eps=ADAM_EPS)
            for name, p in self.field.splats.items()
        }
        decoder = self.field.decoder
        self.decoder_optimizer = torch.optim.Adam(decoder.parameters(), lr=o.decoder_lr) if decoder else None
        # kept apart from ``optimizers``, whose keys must equal the splat parameters for gsplat's strategy
        self.background_optimizer = (torch.optim.Adam([self.learned_background], lr=o.sh0_lr, eps=ADAM_EPS)
                                     if self.learned_background is not None else None)

    def means_lr(self, step: int) -> float:
        o = self.config.optim
        return exponential_decay(step, o.means_lr_init * self.scene_scale, o.means_lr_final * self.scene_scale,
                                 self.config.steps)

    def sh_degree_at(self, step: int) -> int:
        return min(step // self.config.sh_degree_interval, self.config.sh_degree)

    def background(self, training: bool = False) -> Tensor:
        """The colour ``[3]`` under transparent pixels (``config.background``): a fresh random colour per
        call for ``random`` when ``training``, else the fixed / learned / scene colour."""
        mode = self.background_mode
        if training and mode == "random":
            return torch.rand(3, generator=self.generator).to(self.device)
        if mode == "learned":
            return self.learned_background.clamp(0, 1) if training else self.learned_background.detach().clamp(0, 1)
        colour = mode if isinstance(mode, Tensor) else self.train_scene.background
        return colour.to(self.device, torch.float32)

    def target_image(self, scene: Scene, index: int, background: Tensor) -> Tensor:
        """View ``index`` of ``scene`` as ``[1, 3, H, W]``, re-composited over ``background`` where the
        scene has alpha (photos keep their own background)."""
        alphas = scene.alphas[index].to(self.device) if scene.alphas is not None else None
        image = recomposite(scene.images[index].to(self.device), alphas, scene.background.to(self.device),
                            background.detach())
        return image.permute(2, 0, 1)[None]

    def render_view(self, scene: Scene, index: int, background: Tensor | None = None, **kwargs):
        """Renders view ``index`` of ``scene`` with the current field (kwargs go to ``FeatureField.render``)."""
        return self.field.render(
            scene.viewmats[index:index + 1].to(self.device), scene.Ks[index:index + 1].to(self.device),
            scene.width, scene.height, background=self.background() if background is None else background,
            backend=self.config.backend, **kwargs)

    # ----------------------------------------------------------------------------------- train
    def train_step(self) -> dict[str, float]:
        cfg, step = self.config, self.step
        scene = self.train_scene
        index = int(torch.randint(scene.num_views, (1,), generator=self.generator))
        self.optimizers["means"].param_groups[0]["lr"] = self.means_lr(step)
        background = self.background(training=True)
        out = self.render_view(scene, index, background, sh_degree=self.sh_degree_at(step),
                               with_features=self.use_features,
                               feature_grad_to_geometry=cfg.loss.feature_grad_to_geometry)
        self.strategy.step_pre_backward(self.field.splats, self.optimizers, self.strategy_state, step, out.meta)
        target = self.target_image(scene, index, background)
        rgb_loss = image_loss(out.rgb, target, cfg.loss.lambda_dssim, padding="same")
        loss = rgb_loss
        logs = {"rgb_loss": float(rgb_loss.detach())}
        if self.use_features:
            teacher = self.teacher_maps[scene.names[index]].to(self.device)
            pred = resize_to(out.features, tuple(teacher.shape[1:]))
            feature_loss = feature_distill_loss(pred, teacher[None], cfg.loss.feature_kind)
            loss = loss + cfg.loss.feature_weight * feature_loss
            logs["feature_loss"] = float(feature_loss.detach())
        self._check_finite(step + 1, loss)
        loss.backward()
        self._optimizer_step()
        self.strategy.step_post_backward(self.field.splats, self.optimizers, self.strategy_state, step, out.meta)
        self._check_finite(step + 1)
        self._reset_opacities(step)
        self.step += 1
        logs["psnr"] = psnr(out.rgb.detach().clamp(0, 1), target)
        return logs

    def _optimizer_step(self) -> None:
        """One step of every optimizer (Gaussians, decoder, background), gradients cleared after."""
        for optimizer in self.optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        for extra in (self.decoder_optimizer, self.background_optimizer):
            if extra is not None:
                extra.step()
                extra.zero_grad(set_to_none=True)

    def _check_finite(self, step: int, loss: Tensor | None = None) -> None:
        """Stops a diverging run at ``step`` (see :mod:`distillcore.divergence`) before a NaN state can
        replace the last good checkpoint. ``exp(scales)`` is checked too: a log-scale past 88 is finite
        but its Gaussian is infinitely large, which no rasterizer can project."""
        params = None
        if loss is None:
            params = {f"parameter {name!r}": p for name, p in self.field.splats.items()}
            params["the activated scales exp(scales)"] = self.field.gaussians.activated_scales
        check_finite(step, loss, params, checkpoint=self.checkpoint_path, checkpoint_step=self.checkpoint_step)

    def _reset_opacities(self, step: int) -> None:
        """3DGS's periodic opacity reset. gsplat 1.5.3's ``DefaultStrategy`` tests
        ``step % reset_every == 0 & step > 0``, which Python reads as a chained comparison that is
        always False, so the reset never happens there; it is done here instead."""
        d = self.config.densify
        if d.enabled and 0 < step < d.refine_stop_iter and step % d.reset_every == 0:
            reset_opa(self.field.splats, self.optimizers, self.strategy_state, value=d.prune_opa * 2.0)

    def train(self, progress: bool = True, until: int | None = None) -> dict[str, float]:
        """Runs to ``config.steps`` (or stops early at step ``until``, checkpointed, resumable);
        evaluates and checkpoints periodically; returns the final metrics."""
        cfg = self.config
        stop = cfg.steps if until is None else min(until, cfg.steps)
        bar = tqdm(total=cfg.steps, initial=self.step, desc=f"train {self.name}", disable=not progress)
        # loss / PSNR curves when tensorboard is installed (one writer per run: rank 0 of a sharded run)
        tb = ScalarWriter(self.out_dir / "tb", enabled=self.writes_reports)
        started = time.perf_counter()
        earlier_seconds = self.total_train_seconds
        while self.step < stop:
            with deterministic_algorithms(cfg.deterministic):
                logs = self.train_step()
            bar.update(1)
            if self.step % 10 == 0 or self.step == stop:
                bar.set_postfix(loss=f"{logs['rgb_loss']:.4f}", psnr=f"{logs['psnr']:.2f}",
                                gaussians=self.field.num_gaussians)
                tb.add_scalars({**logs, "gaussians": self.field.num_gaussians}, self.step, prefix="train/")
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps and self.test_scene is not None:
                # the training time so far (this evaluation excluded): how long a quality took to reach
                seconds = earlier_seconds + time.perf_counter() - started
                self.history.append({"step": self.step, "total_train_seconds": seconds, **self.evaluate()})
                tb.add_scalars(self.history[-1], self.step, prefix="test/")
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.total_train_seconds = earlier_seconds + time.perf_counter() - started
                self.save_checkpoint()
        bar.close()
        elapsed = time.perf_counter() - started
        self.total_train_seconds = earlier_seconds + elapsed
        metrics = {"step": self.step, "num_gaussians": self.field.num_gaussians,
                   "train_seconds": elapsed, "total_train_seconds": self.total_train_seconds,
                   "background": [round(float(v), 6) for v in self.background()]}  # `render` reuses it
        if self.step == cfg.steps and self.test_scene is not None:
            metrics.update(self.evaluate())
            tb.add_scalars(metrics, self.step, prefix="test/")
        tb.close()
        self.history.append(metrics)
        self.save_checkpoint()
        return metrics

    # ----------------------------------------------------------------------------------- eval
    @torch.no_grad()
    def evaluate(self, scene: Scene | None = None, teacher_maps: dict[str, Tensor] | None = None) -> dict[str, float]:
        """Mean PSNR / SSIM (and feature cosine where teacher maps exist) over the views of ``scene``
        (default: the test split)."""
        scene = self.test_scene if scene is None else scene
        if scene is None:
            raise ValueError("no scene to evaluate: pass one or give the trainer a test split")
        maps = self.teacher_maps if teacher_maps is None else teacher_maps
        psnrs, ssims, cosines = [], [], []
        background = self.background()  # the configured colour; "random" evaluates over the scene's own
        for index, name in enumerate(scene.names):
            out = self.render_view(scene, index, background, with_features=self.use_features)
            rgb = out.rgb[0].clamp(0, 1)
            target = self.target_image(scene, index, background)[0]
            psnrs.append(psnr(rgb, target))
            ssims.append(image_ssim(rgb, target))
            if self.use_features and maps is not None and name in maps:
                teacher = maps[name].to(self.device)
                pred = resize_to(out.features, tuple(teacher.shape[1:]))[0]
                cosines.append(feature_cosine(pred, teacher))
        metrics = {"psnr": sum(psnrs) / len(psnrs), "ssim": sum(ssims) / len(ssims)}
        if cosines:
            metrics["feature_cosine"] = sum(cosines) / len(cosines)
        return metrics

    # ----------------------------------------------------------------------------------- checkpoints
    @property
    def checkpoint_path(self) -> pathlib.Path:
        return self.out_dir / "checkpoint.pt"

    def state(self) -> dict:
        return {
            "step": self.step,
            "config": self.config.to_dict(),
            "scene": self.name,
            "field_config": self.field.config_dict(),
            "field_state": self.field.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "decoder_optimizer": self.decoder_optimizer.state_dict() if self.decoder_optimizer else None,
            "background": (None if self.learned_background is None else
                           {"colour": self.learned_background.detach().cpu().clone(),
                            "optimizer": self.background_optimizer.state_dict()}),
            "strategy_state": self.strategy_state,
            "torch_rng": torch.get_rng_state(),
            # gsplat's densification draws split samples on the Gaussians' device
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "generator": self.generator.get_state(),
            "history": self.history,
            "total_train_seconds": self.total_train_seconds,
            "fingerprint": self.fingerprint,
        }

    def save_checkpoint(self, path: str | pathlib.Path | None = None) -> pathlib.Path:
        written = save_atomic(self.state(), path or self.checkpoint_path)
        if path is None:
            self.checkpoint_step = self.step
        return written

    def resume(self, path: str | pathlib.Path | None = None) -> int:
        """Restores everything from a checkpoint (default: ``out_dir/checkpoint.pt``); returns its step."""
        state = load_field_checkpoint(path or self.checkpoint_path)
        stored = state.get("fingerprint")
        if stored is not None and self.fingerprint is not None:
            problem = describe_mismatch(stored, self.fingerprint, ignore=("config.steps",))
            if problem:  # the scene is identified by its content, not by its folder name
                raise ValueError(f"{path or self.checkpoint_path} {problem}")
        elif state["scene"] != self.name:
            raise ValueError(f"checkpoint is of scene {state['scene']!r}, not {self.name!r}")
        if state["field_config"] != self.field.config_dict():
            raise ValueError(f"checkpoint field {state['field_config']} does not match {self.field.config_dict()}")
        self.field = FeatureField.from_state(state["field_config"], state["field_state"]).to(self.device)
        self._build_optimizers()
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        if self.decoder_optimizer is not None:
            self.decoder_optimizer.load_state_dict(state["decoder_optimizer"])
        if self.learned_background is not None and state.get("background") is not None:
            with torch.no_grad():
                self.learned_background.copy_(state["background"]["colour"])
            self.background_optimizer.load_state_dict(state["background"]["optimizer"])
        self.strategy_state = state["strategy_state"]
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.generator.set_state(state["generator"])
        self.step = state["step"]
        self.checkpoint_step = self.step
        self.history = state["history"]
        # checkpoints written before this key: the times of the finished runs in the history
        self.total_train_seconds = state.get("total_train_seconds",
                                             sum(h.get("train_seconds", 0.0) for h in self.history))
        return self.step


def load_field_checkpoint(path: str | pathlib.Path) -> dict:
    """The dict a :class:`Trainer` checkpoint holds, read safely (no code runs; see
    :mod:`distillcore.serialization`); a ValueError names a file that is not such a checkpoint."""
    state = load_state(path, what="field checkpoint")
    if not isinstance(state, dict) or not {"field_config", "field_state", "step"} <= state.keys():
        raise ValueError(f"{path} is not a distill3d field checkpoint (no field_config / field_state / step)")
    return state


def field_from_checkpoint(path: str | pathlib.Path) -> tuple[FeatureField, dict]:
    """The trained field of a checkpoint and the checkpoint's training config (as a dict)."""
    state = load_field_checkpoint(path)
    return FeatureField.from_state(state["field_config"], state["field_state"]), state["config"]


__all__ = ["Trainer", "validate_inputs", "field_from_checkpoint", "load_field_checkpoint", "scene_scale"]
