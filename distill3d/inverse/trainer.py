"""Progressive radiance distillation (PRD) training.

1. Radiance pre-training: plain 3DGS on the images, run by the Feature 3DGS trainer
   (:class:`distill3d.fields.trainer.Trainer` without a teacher; its densification, schedules,
   checkpoints and resume) in ``out_dir/radiance``.
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

import pathlib
import time

import torch
from torch import Tensor
from tqdm import tqdm

from distillcore.image import image_loss
from distill3d.data import Scene
from distill3d.fields.checkpoint import load_checkpoint, save_atomic
from distill3d.fields.metrics import image_ssim, psnr
from distill3d.fields.trainer import Trainer, scene_scale

from .config import GROUPS, PRDConfig
from .model import PRDModel, light_regularizer

ADAM_EPS = 1e-15


def check_stage_inputs(train: Scene, config: PRDConfig) -> None:
    """Errors before training: bad stages, or a stage that needs object masks the scene lacks."""
    config.validate()
    if train.num_views < 2:
        raise ValueError(f"the training split has {train.num_views} view(s): PRD needs at least 2 posed views")
    if train.alphas is None:
        needing = [s.name for s in config.stages if s.needs_masks and s.steps > 0]
        if needing:
            raise ValueError(f"stages {needing} need object masks (the scene's alpha / coverage maps) for the "
                             "progress regulariser or the mask loss, and this scene has none: use a scene "
                             "with alpha (RGBA images), or set progress_weight = mask_weight = 0 in those stages")


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

    # ----------------------------------------------------------------------------------- stage 1
    def pretrain_radiance(self, progress: bool = True) -> dict:
        """Radiance pre-training with the Feature 3DGS trainer (resumes its own checkpoint)."""
        trainer = Trainer(self.train_scene, self.config.radiance, self.out_dir / "radiance", teacher_maps=None,
                          test=self.test_scene, name=self.name)
        if trainer.checkpoint_path.is_file():
            trainer.resume()
        metrics = trainer.train(progress=progress) if trainer.step < self.config.radiance.steps else trainer.history[-1]
        self.model = PRDModel.from_radiance(trainer.field.gaussians, self.config.model)
        self.history.append({"stage": "radiance", **metrics})
        return metrics

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
        target = scene.images[index].permute(2, 0, 1)
        photometric = image_loss(out.image[None], target[None], self.config.lambda_dssim, padding="same")
        loss = stage.image_weight * photometric
        logs = {"image_loss": float(photometric.detach()), "psnr": psnr(out.image.detach().clamp(0, 1), target)}
        if stage.progress_weight > 0 and self.config.model.progress == "learned":
            foreground = scene.alphas[index].permute(2, 0, 1)
            progress_term = ((1.0 - out.progress) * foreground).sum() / foreground.sum().clamp(min=1.0)
            loss = loss + stage.progress_weight * progress_term
            logs["mean_progress"] = 1.0 - float(progress_term.detach())
        if stage.light_weight > 0:
            loss = loss + stage.light_weight * light_regularizer(self.model.light)
        if stage.mask_weight > 0:
            loss = loss + stage.mask_weight * (out.coverage - scene.alphas[index].permute(2, 0, 1)).abs().mean()
        return loss, logs

    def train_step(self) -> dict[str, float]:
        index = int(torch.randint(self.train_scene.num_views, (1,), generator=self.generator))
        loss, logs = self.loss(index)
        loss.backward()
        for optimizer in self.optimizers.values():
            optimizer.step()
        self.model.zero_grad(set_to_none=True)
        self.stage_step += 1
        return logs

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
            metrics.update(evaluate_views(self.model, self.test_scene, self.config.radiance.backend))
        self.history.append(metrics)
        self.save_checkpoint()
        return metrics

    # ----------------------------------------------------------------------------------- checkpoints
    @property
    def checkpoint_path(self) -> pathlib.Path:
        return self.out_dir / "checkpoint.pt"

    def save_checkpoint(self) -> pathlib.Path:
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
        }, self.checkpoint_path)

    def resume(self, path: str | pathlib.Path | None = None) -> None:
        """Restores model, stage, step, optimizers and random states from a checkpoint."""
        state = load_checkpoint(path or self.checkpoint_path)
        if state["scene"] != self.name:
            raise ValueError(f"checkpoint is of scene {state['scene']!r}, not {self.name!r}")
        self.model = PRDModel.from_state(self.config.model, state["model_state"])
        self.stage_index, self.stage_step = state["stage_index"], state["stage_step"]
        self.stage_seconds = state.get("stage_seconds", 0.0)  # absent in checkpoints of older versions
        self.optimizers = {}
        if state["optimizers"]:
            self._build_optimizers()
            for name, optimizer in self.optimizers.items():
                optimizer.load_state_dict(state["optimizers"][name])
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


def model_from_checkpoint(path: str | pathlib.Path) -> tuple[PRDModel, PRDConfig]:
    """The trained model of a PRD checkpoint and its config."""
    state = load_checkpoint(path)
    config = PRDConfig.from_dict(state["config"])
    return PRDModel.from_state(config.model, state["model_state"]), config


__all__ = ["PRDTrainer", "check_stage_inputs", "evaluate_views", "model_from_checkpoint", "GROUPS"]
