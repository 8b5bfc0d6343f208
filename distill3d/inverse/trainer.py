"""Progressive radiance distillation (PRD) training.

1. Radiance pre-training: plain 3DGS on the images, run by the Feature 3DGS trainer
   (:class:`distill3d.fields.trainer.Trainer` without a teacher; its densification, schedules,
   checkpoints and resume) in ``radiance_dir`` (default ``out_dir/radiance``; ``train_prd`` uses a
   shared cache entry keyed by the pre-training's fingerprint).
2. The physical model starts from that field (:meth:`PRDModel.from_radiance`) and the ``stages`` of
   ``PRDConfig`` run in order (specular, diffuse, joint by default), each training its parameter groups
   on the loss of :mod:`distill3d.inverse.config`. The progress map starts below 1, so the radiance
   field keeps explaining the images while the physics is fitted; it rises where the physical model
   reproduces them and stays below 1 where light paths are unmodelled (inter-reflections, shadows),
   which the radiance term keeps.

Checkpoints (``out_dir/checkpoint.pt``) hold the model, the stage, the step in it, the stage's
optimizers and the random states, written atomically; :meth:`PRDTrainer.resume` continues the run
(bit for bit up to the native rasterizer's non-deterministic parallel backward).
"""
from __future__ import annotations

import logging
import pathlib
import time

import torch
from torch import Tensor
from tqdm import tqdm

from distillcore.determinism import deterministic_algorithms
from distillcore.divergence import check_finite
from distillcore.image import image_loss
from distillcore.runs import describe_mismatch
from distillcore.serialization import load_state, save_atomic
from distill3d.data import Scene
from distill3d.fields.metrics import image_ssim, psnr
from distill3d.fields.field import FeatureField
from distill3d.fields.trainer import Trainer, scene_scale

from .config import GROUPS, PRDConfig
from .model import PRDModel, PRDRender, light_regularizer

ADAM_EPS = 1e-15
log = logging.getLogger(f"distillkit.{__name__}")  # the hierarchy distillcore.config_cli prints


def check_stage_inputs(train: Scene, config: PRDConfig) -> None:
    """Errors before training: bad stages or too few views. (A scene without object masks gets them from
    the pre-trained field's opacity, or loses the mask terms: ``PRDConfig.masks``.)"""
    config.validate()
    if train.num_views < 2:
        raise ValueError(f"the training split has {train.num_views} view(s): PRD needs at least 2 posed views")


@torch.no_grad()
def opacity_masks(field: FeatureField, scene: Scene, threshold: float, backend: str = "auto") -> Tensor:
    """Object masks ``[V, H, W, 1]`` (0 / 1) of ``scene``'s views: the field's accumulated opacity
    ``A = sum_i alpha_i T_i`` above ``threshold``. For photos without alpha."""
    masks = []
    for index in range(scene.num_views):  # one view at a time: the memory of one render
        out = field.render(scene.viewmats[index:index + 1], scene.Ks[index:index + 1], scene.width, scene.height,
                           with_features=False, backend=backend)
        masks.append((out.alpha[0].permute(1, 2, 0) > threshold).float())
    return torch.stack(masks)


class PRDTrainer:
    """Trains a :class:`PRDModel` on ``train`` (``test`` optional, evaluated at the end)."""

    def __init__(self, train: Scene, config: PRDConfig, out_dir: str | pathlib.Path, test: Scene | None = None,
                 name: str | None = None):
        check_stage_inputs(train, config)
        self.train_scene, self.test_scene, self.config = train, test, config
        self.name = name or (train.root.name if train.root is not None else "scene")
        self.out_dir = pathlib.Path(out_dir)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.scene_scale = scene_scale(train)
        self.model: PRDModel | None = None
        self.stage_index = 0
        self.stage_step = 0
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.history: list[dict] = []
        self.stage_seconds = 0.0  # training time spent in the current stage so far (across resumes)
        # where the radiance pre-training lives (train_prd points it at a shared cache entry) and the
        # fingerprints (distillcore.runs) its checkpoint and this run's checkpoints carry; None: unchecked
        self.radiance_dir = self.out_dir / "radiance"
        self.radiance_fingerprint: dict | None = None
        self.fingerprint: dict | None = None
        self.masks: Tensor | None = train.alphas  # [V, H, W, 1] of the progress and mask terms (None: terms off)
        self.mask_source = "scene" if train.alphas is not None else None

    # ----------------------------------------------------------------------------------- stage 1
    def pretrain_radiance(self, progress: bool = True) -> dict:
        """Radiance pre-training with the Feature 3DGS trainer (resumes its own checkpoint)."""
        trainer = self._radiance_trainer()
        if trainer.checkpoint_path.is_file():
            trainer.resume()
        metrics = trainer.train(progress=progress) if trainer.step < self.config.radiance.steps else trainer.history[-1]
        self.model = PRDModel.from_radiance(trainer.field.gaussians, self.config.model)
        self._choose_masks(trainer.field)
        self.history.append({"stage": "radiance", **metrics})
        if self.config.model.visibility.enabled:  # once: the physical stages barely move the Gaussians
            started = time.perf_counter()
            self.model.bake_visibility(self.scene_scale, cameras=self.train_scene)
            seconds = time.perf_counter() - started
            log.info("%s: visibility of %d Gaussians in %d directions baked in %.1f s", self.name,
                     len(self.model.gaussians), self.config.model.visibility.num_directions, seconds)
            self.history.append({"stage": "visibility", "seconds": seconds})
        return metrics

    def _radiance_trainer(self) -> Trainer:
        trainer = Trainer(self.train_scene, self.config.radiance, self.radiance_dir, teacher_maps=None,
                          test=self.test_scene, name=self.name)
        trainer.fingerprint = self.radiance_fingerprint
        return trainer

    def _choose_masks(self, field: FeatureField | None) -> None:
        """For a scene without alpha: masks from ``field``'s opacity, or the mask terms off
        (``PRDConfig.masks``); the choice is logged in one line."""
        needing = [s.name for s in self.config.stages if s.needs_masks and s.steps > 0]
        if self.train_scene.alphas is not None or not needing or self.mask_source is not None:
            return
        cfg = self.config.masks
        fraction = None
        if cfg.source != "off" and field is not None:
            masks = opacity_masks(field, self.train_scene, cfg.threshold, self.config.radiance.backend)
            fraction = float(masks.mean())
            if cfg.source == "opacity" or fraction >= cfg.min_foreground:
                self.masks, self.mask_source = masks, "opacity"
                log.info("%s has no alpha masks: using the pre-trained radiance field's opacity > %g as object masks "
                         "(%.0f%% of the training pixels) for the progress / mask terms of stages %s",
                         self.name, cfg.threshold, 100 * fraction, needing)
                return
        why = ("masks.source='off'" if cfg.source == "off" else "no pre-trained radiance field to take them from"
               if fraction is None else f"the pre-trained field covers only {100 * fraction:.2f}% of the training pixels")
        self.masks, self.mask_source = None, "off"
        log.info("%s has no alpha masks (%s): progress and mask terms of stages %s are off", self.name, why, needing)

    # ----------------------------------------------------------------------------------- optimizers
    def _learning_rate(self, name: str) -> float:
        o = self.config.optim
        if name == "means":
            return o.means_lr * self.scene_scale
        return getattr(o, f"{name}_lr")

    def _build_optimizers(self) -> None:
        stage = self.config.stages[self.stage_index]
        groups = [g for g in stage.groups if not (g == "progress" and self.config.model.progress == "one")]
        self.optimizers = {}
        for group in groups:
            for name, param in self.model.group_parameters(group).items():
                lr = self._learning_rate(name) * stage.lr_scale
                self.optimizers[name] = torch.optim.Adam([param], lr=lr, eps=ADAM_EPS)

    # ----------------------------------------------------------------------------------- steps
    def loss(self, index: int) -> tuple[Tensor, dict[str, float]]:
        """The stage's loss on training view ``index`` (formula in :mod:`distill3d.inverse.config`)."""
        stage = self.config.stages[self.stage_index]
        scene = self.train_scene
        out = self.model.render(scene.viewmats[index], scene.Ks[index], scene.width, scene.height,
                                scene.background, backend=self.config.radiance.backend)
        loss, logs = self.view_loss(out, index)
        if stage.light_weight > 0:
            loss = loss + stage.light_weight * light_regularizer(self.model.light)
        return loss, logs

    def view_loss(self, out: PRDRender, index: int) -> tuple[Tensor, dict[str, float]]:
        """The stage's terms of training view ``index`` rendered as ``out``: everything of :meth:`loss` but
        the light prior, which belongs to the light, not to a view."""
        stage = self.config.stages[self.stage_index]
        target = self.train_scene.images[index].permute(2, 0, 1)
        photometric = image_loss(out.image[None], target[None], self.config.lambda_dssim, padding="same")
        loss = stage.image_weight * photometric
        logs = {"image_loss": float(photometric.detach()), "psnr": psnr(out.image.detach().clamp(0, 1), target)}
        if stage.progress_weight > 0 and self.config.model.progress == "learned" and self.masks is not None:
            foreground = self.masks[index].permute(2, 0, 1)
            progress_term = ((1.0 - out.progress) * foreground).sum() / foreground.sum().clamp(min=1.0)
            loss = loss + stage.progress_weight * progress_term
            logs["mean_progress"] = 1.0 - float(progress_term.detach())
        if stage.mask_weight > 0 and self.masks is not None:
            loss = loss + stage.mask_weight * (out.coverage - self.masks[index].permute(2, 0, 1)).abs().mean()
        return loss, logs

    def train_step(self) -> dict[str, float]:
        index = int(torch.randint(self.train_scene.num_views, (1,), generator=self.generator))
        loss, logs = self.loss(index)
        self._check_finite(loss)
        loss.backward()
        for optimizer in self.optimizers.values():
            optimizer.step()
        self.model.zero_grad(set_to_none=True)
        self._check_finite()
        self.stage_step += 1
        return logs

    def _check_finite(self, loss: Tensor | None = None) -> None:
        """Stops a diverging stage (see :mod:`distillcore.divergence`) before a NaN state is checkpointed."""
        stage = self.config.stages[self.stage_index]
        params = None if loss is not None else {f"parameter {name!r}": p for name, p in self.model.named_parameters()}
        check_finite(f"{self.stage_step + 1} of stage {stage.name!r}", loss, params, checkpoint=self.checkpoint_path)

    def train(self, progress: bool = True, max_steps: int | None = None) -> dict:
        """Radiance pre-training (unless resumed past it), then the physical stages; returns final metrics.
        ``max_steps`` stops after that many physical steps (checkpointed; ``resume`` continues)."""
        if self.model is None:
            self.pretrain_radiance(progress)
        started = time.perf_counter()
        stages = self.config.stages
        budget = float("inf") if max_steps is None else max_steps
        while self.stage_index < len(stages):
            stage = stages[self.stage_index]
            if not self.optimizers:
                self._build_optimizers()
            bar = tqdm(total=stage.steps, initial=self.stage_step, desc=f"PRD {self.name}: {stage.name}",
                       disable=not progress)
            logs: dict[str, float] = {}
            resumed_at, stage_clock = self.stage_seconds, time.perf_counter()
            while self.stage_step < stage.steps and budget > 0:
                with deterministic_algorithms(self.config.deterministic):
                    logs = self.train_step()
                self.stage_seconds = resumed_at + time.perf_counter() - stage_clock
                budget -= 1
                bar.update(1)
                if self.stage_step % 10 == 0:
                    bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()})
                every = self.config.checkpoint_every
                if every and self.stage_step % every == 0 and self.stage_step < stage.steps:
                    self.save_checkpoint()
            bar.close()
            if self.stage_step < stage.steps:  # interrupted by max_steps
                self.save_checkpoint()
                return {"stage": stage.name, "stage_step": self.stage_step}
            self.history.append({"stage": stage.name, "steps": stage.steps, "seconds": self.stage_seconds, **logs})
            self.stage_index, self.stage_step, self.optimizers, self.stage_seconds = self.stage_index + 1, 0, {}, 0.0
            self.save_checkpoint()
        metrics = {"physical_seconds": time.perf_counter() - started}
        if self.test_scene is not None:
            metrics.update(self.evaluate(self.test_scene))
        self.history.append(metrics)
        self.save_checkpoint()
        return metrics

    def evaluate(self, scene: Scene) -> dict[str, float]:
        """:func:`evaluate_views` of the current model on ``scene``."""
        return evaluate_views(self.model, scene, self.config.radiance.backend)

    # ----------------------------------------------------------------------------------- checkpoints
    @property
    def checkpoint_path(self) -> pathlib.Path:
        return self.out_dir / "checkpoint.pt"

    def save_checkpoint(self, path: str | pathlib.Path | None = None) -> pathlib.Path:
        """Writes the checkpoint (atomically) to ``path`` (default :attr:`checkpoint_path`)."""
        return save_atomic({
            "scene": self.name,
            "config": self.config.to_dict(),
            "model_state": self.model.state_dict(),
            "stage_index": self.stage_index,
            "stage_step": self.stage_step,
            "stage_seconds": self.stage_seconds,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
            "fingerprint": self.fingerprint,
        }, path or self.checkpoint_path)

    def resume(self, path: str | pathlib.Path | None = None) -> None:
        """Restores model, stage, step, optimizers and random states from a checkpoint."""
        state = load_prd_checkpoint(path or self.checkpoint_path)
        stored = state.get("fingerprint")
        if stored is not None and self.fingerprint is not None:
            problem = describe_mismatch(stored, self.fingerprint)
            if problem:  # the scene is identified by its content, not by its folder name
                raise ValueError(f"{path or self.checkpoint_path} {problem}")
        elif state["scene"] != self.name:
            raise ValueError(f"checkpoint is of scene {state['scene']!r}, not {self.name!r}")
        self.model = PRDModel.from_state(self.config.model, state["model_state"])
        self.stage_index, self.stage_step = state["stage_index"], state["stage_step"]
        self.stage_seconds = state.get("stage_seconds", 0.0)  # absent in checkpoints of older versions
        self.optimizers = {}
        if state["optimizers"]:
            self._build_optimizers()
            for name, optimizer in self.optimizers.items():
                optimizer.load_state_dict(state["optimizers"][name])
        if self.train_scene.alphas is None and self.mask_source is None:  # the masks pre-training gave, again
            radiance = self._radiance_trainer()  # before the random states are restored: its init draws numbers
            if radiance.checkpoint_path.is_file():
                radiance.resume()
            self._choose_masks(radiance.field if radiance.checkpoint_path.is_file() else None)
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.history = state["history"]


@torch.no_grad()
def evaluate_views(model: PRDModel, scene: Scene, backend: str = "auto") -> dict[str, float]:
    """Mean PSNR / SSIM of the blended image, and of the physical image alone, over ``scene``'s views."""
    scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "physical_psnr": []}
    for index in range(scene.num_views):
        out = model.render(scene.viewmats[index], scene.Ks[index], scene.width, scene.height, scene.background,
                           backend=backend)
        target = scene.images[index].permute(2, 0, 1)
        image = out.image.clamp(0, 1)
        scores["psnr"].append(psnr(image, target))
        scores["ssim"].append(image_ssim(image, target))
        scores["physical_psnr"].append(psnr(out.physical.clamp(0, 1), target))
    return {k: sum(v) / len(v) for k, v in scores.items()}


def load_prd_checkpoint(path: str | pathlib.Path) -> dict:
    """The dict a :class:`PRDTrainer` checkpoint holds, read safely (no code runs; see
    :mod:`distillcore.serialization`); a ValueError names a file that is not such a checkpoint."""
    state = load_state(path, what="PRD checkpoint")
    if not isinstance(state, dict) or not {"config", "model_state"} <= state.keys():
        raise ValueError(f"{path} is not a PRD checkpoint (no config / model_state)")
    return state


def model_from_checkpoint(path: str | pathlib.Path) -> tuple[PRDModel, PRDConfig]:
    """The trained model of a PRD checkpoint and its config."""
    state = load_prd_checkpoint(path)
    config = PRDConfig.from_dict(state["config"])
    return PRDModel.from_state(config.model, state["model_state"]), config


__all__ = ["PRDTrainer", "check_stage_inputs", "evaluate_views", "load_prd_checkpoint", "model_from_checkpoint", "GROUPS"]
