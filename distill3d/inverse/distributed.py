"""Progressive radiance distillation on several ranks (torch.distributed; gloo on CPUs, NCCL on GPUs).

1. Radiance pre-training: :class:`distill3d.fields.distributed.ShardedTrainer` (Gaussians, Adam state and
   densification sharded; see that module). Its merged field starts the physical model on every rank;
   the baked visibility (when on) is traced once from the merged field, and the object masks of a scene
   without alpha come from it as in :class:`~distill3d.inverse.trainer.PRDTrainer`.
2. Physical stages: every per-Gaussian tensor of the :class:`PRDModel` (geometry, SH, materials,
   progress, baked visibility) and its Adam moments are sharded into contiguous slices; the environment
   light is replicated. A step draws ``B = R V`` training views from a generator seeded alike on every
   rank, and rank ``r`` renders views ``[r V, (r + 1) V)`` of it. Each rank evaluates its shard's
   splatted channels (:meth:`PRDModel.gaussian_channels`) for every camera of the step, because the
   normals face the camera, and :func:`distill3d.render.distributed.rasterize_distributed` sends the
   visible rows to the camera's rank, which shades its pixels. The loss is

       L = (1 / B) sum_{views v of the batch} L_v  +  lambda_light R(light),

   with ``L_v`` the per-view terms of :meth:`PRDTrainer.view_loss`; each rank adds ``R(light) / R``, and
   the light's gradient (each rank's views plus its share of the prior) is summed by one all-reduce, so
   every parameter gets the gradient of one process rendering the ``B`` views. Learning rates follow
   gsplat's batch rule as the field trainer does (``lr sqrt(B)``, Adam ``eps / sqrt(B)``, ``betas``
   raised to the batch); one rank with ``V = 1`` is the single-process trainer. The physical stages
   do not densify, so the shards keep their sizes.

Checkpoints: :mod:`distillcore.sharded_checkpoint` in ``out_dir/checkpoint_dist`` (resume on any rank
count). At the end rank 0 also writes the merged model as the single-process ``checkpoint.pt``, so
``distill3d inverse relight`` and the exports read a distributed run as any other. Evaluation splits the
test views over the ranks and reduces the metric sums once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import time

import torch
from torch import Tensor

from distillcore import dist
from distillcore.checks import check_device
from distillcore.runs import RunDirectory, describe_mismatch, fingerprint_key, run_fingerprint, strip_volatile
from distillcore.serialization import write_json_atomic
from distillcore.sharded_checkpoint import MANIFEST, load_sharded_checkpoint, reslice, save_sharded_checkpoint
from distill3d.data import Scene, resolve_scene_dir
from distill3d.fields.distributed import ShardedTrainer, scale_adam_for_batch
from distill3d.fields.metrics import image_ssim, psnr
from distill3d.render.distributed import gather_cameras, rasterize_distributed
from distill3d.render.rasterize import resolve_backend

from .config import PRDConfig
from .model import PRDModel, PRDRender, light_regularizer
from .shading import PreparedLight
from .trainer import PRDTrainer, log

CHECKPOINT_DIR = "checkpoint_dist"
# state_dict entries of a PRDModel that hold one row per Gaussian (sharded); the rest (light) is replicated
PER_GAUSSIAN_PREFIXES = ("gaussians.params.", "visibility")


def per_gaussian_keys(state: dict[str, Tensor], n: int) -> set[str]:
    """The ``state_dict`` entries of a model of ``n`` Gaussians that hold one row per Gaussian (sharded);
    the rest (the light) is replicated.

    Args:
        state: a :class:`PRDModel` ``state_dict``.
        n: its number of Gaussians.
    """
    return {k for k, v in state.items() if k.startswith(PER_GAUSSIAN_PREFIXES) and v.shape[:1] == (n,)}


def render_views_distributed(model: PRDModel,
                             viewmats: Tensor,  # [C_r, 4, 4] this rank's cameras
                             Ks: Tensor,  # [C_r, 3, 3]
                             width: int, height: int,
                             background: Tensor,  # [3]
                             *, light: PreparedLight | None = None, sh_degree: int | None = None,
                             backend: str = "auto") -> list[PRDRender]:
    """:meth:`PRDModel.render` of this rank's cameras, ``model`` holding this rank's shard of the
    Gaussians (collective: every rank calls it, possibly with no cameras).

    Shapes:
        viewmats ``[C_r, 4, 4]``, Ks ``[C_r, 3, 3]``, background ``[3]`` -> ``C_r`` renders.
    """
    if model.uses_visibility and light is None:
        light = model.prepare_light()
    all_viewmats, _, _ = gather_cameras(viewmats, Ks)
    centers = torch.linalg.inv(all_viewmats.to(model.gaussians.means.dtype))[:, :3, 3]
    features = torch.stack([model.gaussian_channels(center, light) for center in centers])  # [C, N_r, F]
    g = model.gaussians
    rendered, maps, coverage, meta = rasterize_distributed(
        g.means, g.quats, g.activated_scales, g.activated_opacities, g.sh_coeffs, viewmats, Ks, width, height,
        features=features, sh_degree=model.render_sh_degree(sh_degree), backgrounds=background,
        feature_grad_to_geometry=model.config.material_grad_to_geometry, backend=backend)
    return [model.shade_gbuffer(model.gbuffer_from_maps(rendered[i], maps[i], coverage[i], meta, light), viewmats[i],
                                Ks[i], background, light=light)
            for i in range(viewmats.shape[0])]


def shard_model(model: PRDModel) -> PRDModel:
    """This rank's contiguous shard of a whole ``model`` (light copied; collective-free).

    Args:
        model: the whole model, alike on every rank.
    """
    state = model.state_dict()
    ctx = dist.context()
    n = len(model.gaussians)
    if n < ctx.world_size:  # an empty shard has no Gaussians to render and would skip per-Gaussian collectives
        raise ValueError(f"{n} Gaussians cannot be split over {ctx.world_size} ranks: use at most {n} processes")
    bounds = dist.shard_bounds(n, ctx.world_size)
    mine = slice(bounds[ctx.rank], bounds[ctx.rank + 1])
    rows = per_gaussian_keys(state, n)
    sharded = {k: (v[mine] if k in rows else v) for k, v in state.items()}
    return _from_state(model.config, sharded)


@torch.no_grad()
def merged_model(shard: PRDModel) -> PRDModel:
    """Every rank's shard joined in global order (collective; every rank gets the whole model).

    Args:
        shard: this rank's shard (:func:`shard_model`).
    """
    state = shard.state_dict()
    rows = per_gaussian_keys(state, len(shard.gaussians))
    merged = {k: (torch.cat(dist.all_gather_variable(v.contiguous())) if k in rows else v) for k, v in state.items()}
    return _from_state(shard.config, merged)


@torch.no_grad()
def _from_state(config, state: dict[str, Tensor]) -> PRDModel:
    """:meth:`PRDModel.from_state` with the parameters in the state's dtype (``from_state`` builds float32
    ones; the baked visibility buffer stays float16)."""
    model = PRDModel.from_state(config, state)
    dtype = state["gaussians.params.means"].dtype
    for p in model.parameters():
        p.data = p.data.to(dtype)
    return model


class ShardedPRDTrainer(PRDTrainer):
    """:class:`PRDTrainer` with the Gaussians sharded over the ranks of the current process group (called
    on every rank; see the module doc).

    Args:
        train, config, out_dir, test, name: as :class:`PRDTrainer`.
        views_per_rank: training views each rank renders per step (``V``).
    """

    def __init__(self, train: Scene, config: PRDConfig, out_dir: str | pathlib.Path, test: Scene | None = None,
                 name: str | None = None, views_per_rank: int = 1):
        if isinstance(views_per_rank, bool) or not isinstance(views_per_rank, int) or views_per_rank < 1:
            raise ValueError(f"views_per_rank must be a positive int, got {views_per_rank!r}")
        super().__init__(train, config, out_dir, test, name)
        self.ctx = dist.context()
        self.views_per_rank = views_per_rank
        self.batch = self.ctx.world_size * views_per_rank
        if self.batch > train.num_views:
            raise ValueError(f"{self.ctx.world_size} ranks x {views_per_rank} views per rank is more than the "
                             f"{train.num_views} training views")

    # ----------------------------------------------------------------------------------- stage 1
    def _radiance_trainer(self, folder: pathlib.Path | None = None) -> ShardedTrainer:
        """The sharded radiance pre-training in ``folder`` (default :attr:`radiance_dir`)."""
        trainer = ShardedTrainer(self.train_scene, self.config.radiance, folder or self.radiance_dir,
                                 teacher_maps=None, test=self.test_scene, name=self.name,
                                 views_per_rank=self.views_per_rank)
        trainer.fingerprint = self.radiance_fingerprint
        return trainer

    def pretrain_radiance(self, progress: bool = True) -> dict:
        """Sharded radiance pre-training (resumes its own checkpoint), then the physical model's shard."""
        trainer = self._radiance_trainer()
        if trainer.checkpoint_path.is_file():
            trainer.resume()
        progress = progress and self.ctx.is_main
        metrics = trainer.train(progress=progress) if trainer.step < self.config.radiance.steps else trainer.history[-1]
        field = trainer.merged_field()
        model = PRDModel.from_radiance(field.gaussians, self.config.model)
        self._choose_masks(field)
        self.history.append({"stage": "radiance", **metrics})
        if self.config.model.visibility.enabled:
            started = time.perf_counter()
            # of the merged field (a shard's occluders are everywhere), every rank with all training views
            model.bake_visibility(self.scene_scale, cameras=self.train_scene)
            self.history.append({"stage": "visibility", "seconds": time.perf_counter() - started})
        self.model = shard_model(model)
        return metrics

    # ----------------------------------------------------------------------------------- steps
    def _build_optimizers(self) -> None:
        super()._build_optimizers()
        scale_adam_for_batch(list(self.optimizers.values()), self.batch)

    def train_step(self) -> dict[str, float]:
        stage, scene, ctx = self.config.stages[self.stage_index], self.train_scene, self.ctx
        # the whole batch is drawn on every rank from the same stream: the ranks agree on it
        batch = torch.randint(scene.num_views, (self.batch,), generator=self.generator).tolist()
        mine = batch[ctx.rank * self.views_per_rank:(ctx.rank + 1) * self.views_per_rank]
        renders = render_views_distributed(self.model, scene.viewmats[mine], scene.Ks[mine], scene.width,
                                           scene.height, scene.background, backend=self.config.radiance.backend)
        loss = self.model.gaussians.means.sum() * 0  # a graph on every rank, so every rank's backward runs
        sums: dict[str, float] = {}
        for out, index in zip(renders, mine):
            view_loss, logs = self.view_loss(out, index)
            loss = loss + view_loss / self.batch
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
        if stage.light_weight > 0:
            loss = loss + stage.light_weight * light_regularizer(self.model.light) / ctx.world_size
        self._check_finite(loss)
        loss.backward()
        light = self.model.light.log_radiance
        light.grad = dist.all_reduce_sum(light.grad if light.grad is not None else torch.zeros_like(light))
        for optimizer in self.optimizers.values():
            optimizer.step()
        self.model.zero_grad(set_to_none=True)
        self._check_finite()
        self.stage_step += 1
        keys = sorted(sums)
        totals = dist.all_reduce_sum(torch.tensor([sums[k] for k in keys], dtype=torch.float64)) / self.batch
        return dict(zip(keys, totals.tolist()))

    def train(self, progress: bool = True, max_steps: int | None = None) -> dict:
        """:meth:`PRDTrainer.train` with the progress bars on rank 0 only; evaluation over all ranks."""
        return super().train(progress=progress and self.ctx.is_main, max_steps=max_steps)

    def evaluate(self, scene: Scene) -> dict[str, float]:
        return evaluate_views_distributed(self.model, scene, self.config.radiance.backend)

    # ----------------------------------------------------------------------------------- checkpoints
    @property
    def checkpoint_path(self) -> pathlib.Path:
        """The manifest naming the last complete sharded checkpoint."""
        return self.out_dir / CHECKPOINT_DIR / MANIFEST

    def save_checkpoint(self) -> pathlib.Path:
        """Writes this rank's shard (every rank calls it); returns the manifest's path."""
        state = self.model.state_dict()
        per_gaussian = per_gaussian_keys(state, len(self.model.gaussians))
        adam = {name: {k: v.detach().cpu().clone() for k, v in optimizer.state_dict()["state"].get(0, {}).items()}
                for name, optimizer in self.optimizers.items()}
        shard = {"model": {k: state[k].detach().cpu().clone() for k in per_gaussian},
                 "adam": {name: moments for name, moments in adam.items() if name != "light"}}
        common = {}
        if self.ctx.is_main:
            common = {"scene": self.name, "config": self.config.to_dict(),
                      "replicated": {k: v.detach().cpu().clone() for k, v in state.items() if k not in per_gaussian},
                      "light_adam": adam.get("light"), "stage_index": self.stage_index, "stage_step": self.stage_step,
                      "stage_seconds": self.stage_seconds, "generator": self.generator.get_state(),
                      "history": self.history, "fingerprint": self.fingerprint, "world_size": self.ctx.world_size,
                      "radiance_dir": str(self.radiance_dir.resolve())}
        physical_steps = sum(s.steps for s in self.config.stages[:self.stage_index]) + self.stage_step
        return save_sharded_checkpoint(self.checkpoint_path.parent, physical_steps, shard, common)

    def resume(self, path: str | pathlib.Path | None = None) -> None:
        """Restores a sharded checkpoint written by any number of ranks (model, stage, step, optimizers and
        the batch stream)."""
        shards, common = load_sharded_checkpoint(path or self.checkpoint_path)
        stored = common.get("fingerprint")
        if stored is not None and self.fingerprint is not None:
            problem = describe_mismatch(stored, self.fingerprint)
            if problem:
                raise ValueError(f"{path or self.checkpoint_path} {problem}")
        elif common["scene"] != self.name:
            raise ValueError(f"checkpoint is of scene {common['scene']!r}, not {self.name!r}")
        state = dict(common["replicated"])
        for key in shards[0]["model"]:
            state[key] = reslice(shards, lambda s: s["model"][key])
        self.model = _from_state(self.config.model, state)
        self.stage_index, self.stage_step = common["stage_index"], common["stage_step"]
        self.stage_seconds = common["stage_seconds"]
        self.optimizers = {}
        if self.stage_index < len(self.config.stages):
            self._build_optimizers()
            for name, optimizer in self.optimizers.items():
                saved = common["light_adam"] if name == "light" else shards[0]["adam"].get(name)
                if not saved:
                    continue
                param = optimizer.param_groups[0]["params"][0]
                optimizer.state[param] = {
                    k: v.clone() if name == "light" or k == "step"
                    else reslice(shards, lambda s: s["adam"][name][k])
                    for k, v in saved.items()}
        if self.train_scene.alphas is None and self.mask_source is None:  # the masks pre-training gave, again
            # from the pre-training this run started from: its entry is keyed by the views per step, so a
            # resume on another rank count (or --views-per-rank) has another radiance_dir, where none is
            radiance = self._radiance_trainer(pathlib.Path(common["radiance_dir"])) if "radiance_dir" in common else None
            if radiance is None or not radiance.checkpoint_path.is_file():  # checkpoints of before, a moved cache
                radiance = self._radiance_trainer()
            found = radiance.checkpoint_path.is_file()
            if found:
                radiance.resume()
            self._choose_masks(radiance.merged_field() if found else None)
        self.generator.set_state(common["generator"])
        self.history = common["history"]

    def write_merged_checkpoint(self) -> PRDModel:
        """The whole model on every rank; rank 0 also writes it as the single-process ``checkpoint.pt``
        (collective)."""
        model = merged_model(self.model)
        if self.ctx.is_main:
            shard, self.model = self.model, model
            try:
                PRDTrainer.save_checkpoint(self, self.out_dir / "checkpoint.pt")
            finally:
                self.model = shard
        dist.barrier()
        return model


@torch.no_grad()
def evaluate_views_distributed(model: PRDModel, scene: Scene, backend: str = "auto") -> dict[str, float]:
    """:func:`~distill3d.inverse.trainer.evaluate_views` with ``model`` sharded: test view ``k R + r`` is
    rendered on rank ``r`` and the sums are reduced once (every rank returns the means of all views).

    Args:
        model: this rank's shard of the model.
        scene: the test views (alike on every rank; a rank past the last view renders none).
        backend: rasterizer backend.
    """
    ctx = dist.context()
    sums = torch.zeros(4, dtype=torch.float64)  # psnr, ssim, physical psnr, views
    for first in range(0, scene.num_views, ctx.world_size):
        index = first + ctx.rank
        mine = [index] if index < scene.num_views else []
        renders = render_views_distributed(model, scene.viewmats[mine], scene.Ks[mine], scene.width, scene.height,
                                           scene.background, backend=backend)
        for out, i in zip(renders, mine):
            target = scene.images[i].permute(2, 0, 1)
            image = out.image.clamp(0, 1)
            sums += torch.tensor([psnr(image, target), image_ssim(image, target),
                                  psnr(out.physical.clamp(0, 1), target), 1.0], dtype=torch.float64)
    sums = dist.all_reduce_sum(sums)
    return {"psnr": float(sums[0] / sums[3]), "ssim": float(sums[1] / sums[3]), "physical_psnr": float(sums[2] / sums[3])}


def _train_rank(train: Scene, test: Scene | None, config: PRDConfig, out_dir: pathlib.Path, name: str,
                views_per_rank: int, radiance_dir: pathlib.Path, radiance_fingerprint: dict, fingerprint: dict,
                resume: bool, progress: bool) -> dict:
    """The per-rank program: (resume,) pre-train, the physical stages, the merged checkpoint."""
    trainer = ShardedPRDTrainer(train, config, out_dir, test, name, views_per_rank)
    trainer.fingerprint, trainer.radiance_dir, trainer.radiance_fingerprint = fingerprint, radiance_dir, radiance_fingerprint
    if resume and trainer.checkpoint_path.is_file():
        trainer.resume()
    if trainer.model is None:
        trainer.pretrain_radiance(progress)
    metrics = trainer.train(progress=progress)
    trainer.write_merged_checkpoint()
    return {**metrics, "history": trainer.history, "ranks": trainer.ctx.world_size, "views_per_step": trainer.batch}


def train_prd_sharded(scene_dir: str | pathlib.Path, config: PRDConfig, out_dir: str | pathlib.Path, *,
                      nproc: int = 2, views_per_rank: int = 1, downsample: int = 1, resume: bool = False,
                      progress: bool = True, overwrite: bool = False, radiance_cache: str | pathlib.Path | None = None,
                      timeout_s: float = dist.DEFAULT_TIMEOUT_S) -> dict:
    """:func:`distill3d.inverse.pipeline.train_prd` on ``nproc`` local ranks, or on the ranks of the
    torchrun job this process belongs to. Rank 0 (or the launching process) guards ``out_dir`` and the
    shared radiance pre-training entry (held for the run); the entry's key includes the views per step,
    so sharded and single-process pre-trainings are separate entries. Writes ``checkpoint.pt`` (merged),
    ``checkpoint_dist/``, ``metrics.json``, ``run.json`` and ``export/``; returns the metrics.

    Args:
        scene_dir, config, out_dir, downsample, resume, progress, overwrite, radiance_cache: as
            :func:`~distill3d.inverse.pipeline.train_prd`.
        nproc: local ranks to launch (ignored inside a torchrun job, which has its own).
        views_per_rank: training views each rank renders per step.
        timeout_s: how long a collective may wait for a rank before the job fails.

    Raises:
        ValueError: more ranks x views per rank than training views, or ``resume`` of a single-process run
            (``checkpoint.pt`` without ``checkpoint_dist/``; before any rank starts).
    """
    from .pipeline import load_splits
    from .relight import export

    check_device(config.radiance.device)  # as the single-process trainer does, before any rank starts
    resolve_backend(config.radiance.backend, config.radiance.device)
    torchrun = dist.in_torchrun_job()
    ctx = dist.init_from_env(config.radiance.device, timeout_s) if torchrun else None
    main = ctx is None or ctx.is_main
    ranks = ctx.world_size if ctx is not None else nproc
    scene_dir, out_dir = resolve_scene_dir(scene_dir), pathlib.Path(out_dir)
    if resume and (out_dir / "checkpoint.pt").is_file() and not (out_dir / CHECKPOINT_DIR / MANIFEST).is_file():
        # a single-process run: its checkpoint is not sharded, and starting over here would silently train
        # it again from scratch (a new radiance entry too) and replace its checkpoint.pt
        raise ValueError(f"{out_dir} holds a single-process PRD run (checkpoint.pt, no {CHECKPOINT_DIR}/): resume it "
                         "without --nproc / --views-per-rank, or start a sharded run over it with --overwrite")
    fingerprint = run_fingerprint(scene=scene_dir, config=config.to_dict(), downsample=downsample)
    radiance_fp = {**fingerprint, "config": strip_volatile(config.radiance.to_dict()), "stage": "radiance",
                   "views_per_step": ranks * views_per_rank}
    cache = pathlib.Path(radiance_cache) if radiance_cache is not None else out_dir.parent / "radiance_cache"
    entry = cache / f"{scene_dir.name}-{fingerprint_key(radiance_fp)}"
    info = {"scene": str(scene_dir.resolve()), "downsample": downsample,
            "data": dataclasses.asdict(config.radiance.data), "radiance": {"dir": str(entry.resolve())},
            "ranks": ranks, "views_per_rank": views_per_rank}
    guard = (RunDirectory(out_dir, fingerprint=fingerprint, resume=resume, overwrite=overwrite,
                          markers=("checkpoint.pt", f"{CHECKPOINT_DIR}/{MANIFEST}"),
                          outputs=("metrics.json", "export", "radiance", "relit"), info=info) if main else None)
    with guard if guard is not None else contextlib.nullcontext() as run:
        train, test = load_splits(scene_dir, downsample, config.radiance.data, config.radiance.background)
        if ranks * views_per_rank > train.num_views:
            raise ValueError(f"--nproc {ranks} x --views-per-rank {views_per_rank} is more than the "
                             f"{train.num_views} training views of {scene_dir.name}")
        resumed = (run.resumed if main else resume) and (out_dir / CHECKPOINT_DIR / MANIFEST).is_file()
        stage = (RunDirectory(entry, fingerprint=radiance_fp, resume=True, wait=True,
                              markers=(f"{CHECKPOINT_DIR}/{MANIFEST}",), info={"stage": "radiance pre-training"})
                 if main else None)
        with stage if stage is not None else contextlib.nullcontext() as radiance_run:
            if main:
                log.info("radiance pre-training (%d ranks): %s", ranks, entry)
            metrics = dist.launch(_train_rank, nproc, train, test, config, out_dir, scene_dir.name, views_per_rank,
                                  entry, radiance_fp, fingerprint, resumed, progress, timeout_s=timeout_s,
                                  device="cuda" if config.radiance.device.startswith("cuda") else "cpu")
            if main:
                radiance_run.complete(metrics=next(h for h in metrics["history"] if h.get("stage") == "radiance"))
        if main:
            history = metrics.pop("history")
            write_json_atomic(out_dir / "metrics.json", {"history": history, **metrics})
            from .trainer import model_from_checkpoint

            model, _ = model_from_checkpoint(out_dir / "checkpoint.pt")
            export(model, out_dir / "export", test, backend=config.radiance.backend)
            run.complete(radiance={"dir": str(entry.resolve())})
        else:
            metrics.pop("history")
    return metrics


__all__ = ["ShardedPRDTrainer", "evaluate_views_distributed", "merged_model", "render_views_distributed",
           "shard_model", "train_prd_sharded"]
