"""Sharded Feature 3DGS / 3DGS training over ranks (gsplat 1.5.3 / Grendel-GS scheme, torch.distributed).

Each of ``R`` ranks holds a contiguous shard of the Gaussians (every per-Gaussian parameter, its Adam
moments and the densification statistics) and renders ``V`` training views per step; a step trains on
``B = R V`` views drawn from a generator seeded alike on every rank, so the ranks agree on the batch
and rank ``r`` renders views ``[r V, (r + 1) V)`` of it. Rendering is
:func:`distill3d.render.distributed.rasterize_distributed` (each shard projected into all ``B``
cameras, visible 2D Gaussians sent to the camera's rank, gradients returned the same way). The loss is
the batch mean

    L = (1 / B) sum_{views v of the batch} L_v,

so each Gaussian's gradient, summed by the all-to-all backward over every rank's views, is the one of a
single process rendering the ``B`` views; replicated modules (speed-up decoder, learned background) sum
their gradients with one all-reduce. Learning rates follow gsplat's batch rule:
``lr sqrt(B)``, Adam ``eps / sqrt(B)``, ``betas = (1 - B (1 - 0.9), 1 - B (1 - 0.999))``.

Densification is gsplat's ``DefaultStrategy`` applied to each shard with the statistics of all ``B``
cameras (its gradient normalisation uses ``n_cameras = B``), so which Gaussians grow and which are
pruned is the single-process decision; new Gaussians stay on their parent's rank. The one random draw,
the offsets of split children, comes from a hash of the split Gaussian's identity number and the step
(:func:`keyed_split`), not from a per-process stream, so a run gives the same Gaussians on any number
of ranks (to rounding). When the shard sizes
drift apart by more than ``REBALANCE_TOLERANCE`` the Gaussians are redistributed into equal contiguous
shards of the same global order (parameters, Adam moments and statistics travel together).

Checkpoints: every rank writes its shard into ``checkpoint_dist/step_NNNNNNNN/`` atomically; after a
barrier rank 0 writes ``checkpoint_dist/manifest.json`` (atomically) naming that folder, then deletes
older step folders. A rank that dies before the barrier leaves the manifest on the previous complete
checkpoint. Resuming reads all shards (any former rank count), joins them in global order and re-slices
for the current ranks. :meth:`ShardedTrainer.merged_field` gathers the shards into one
:class:`FeatureField` (one 3DGS PLY, as a single-process run writes).

Evaluation splits the test views over the ranks and reduces per-view metric sums once, so the means
cover every test view (not rank 0's share).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import pathlib

import torch
from gsplat.strategy import DefaultStrategy
from gsplat.strategy.ops import _update_param_with_optimizer, duplicate
from gsplat.utils import normalized_quat_to_rotmat
from torch import Tensor

from distillcore import dist
from distillcore.checks import check_device
from distillcore.dist import shard_bounds
from distillcore.feature import feature_distill_loss, resize_to
from distillcore.image import image_loss
from distillcore.serialization import read_json_object, write_json_atomic
from distillcore.sharded_checkpoint import load_sharded_checkpoint, reslice, save_sharded_checkpoint

from distill3d.data import Scene, resolve_scene_dir
from distill3d.data.splits import SceneSplits
from distill3d.gaussians import Gaussians
from distill3d.render.distributed import rasterize_distributed
from distill3d.render.rasterize import resolve_backend

from .config import TrainConfig
from .field import FeatureField, FieldRender
from .metrics import feature_cosine, image_ssim, psnr
from .trainer import Trainer

# Redistribute when the largest shard exceeds the mean shard size by more than this fraction.
REBALANCE_TOLERANCE = 0.1
# Adam's default betas, scaled per gsplat's batch rule.
ADAM_BETAS = (0.9, 0.999)
CHECKPOINT_DIR = "checkpoint_dist"
# per-Gaussian densification state that travels with its Gaussian (``ids``: see :func:`keyed_split`)
STRATEGY_TENSORS = ("grad2d", "count", "radii", "ids")


def scale_adam_for_batch(optimizers: list[torch.optim.Optimizer | None], batch: int) -> None:
    """gsplat's rule for Adam on a batch of ``batch`` views: ``lr sqrt(B)``, ``eps / sqrt(B)``,
    ``betas = 1 - B (1 - beta)`` (``None`` entries are skipped)."""
    scale = math.sqrt(batch)
    betas = tuple(1 - batch * (1 - beta) for beta in ADAM_BETAS)
    for optimizer in optimizers:
        if optimizer is None:
            continue
        for group in optimizer.param_groups:
            group["lr"] *= scale
            group["betas"] = betas
            group["eps"] = group["eps"] / scale


def redistribute_rows(t: Tensor, sizes: list[int], bounds: list[int]) -> Tensor:
    """Moves rows between ranks: this rank holds rows ``[sum(sizes[:r]), sum(sizes[:r+1]))`` of a global
    tensor (``sizes`` of every rank); returns its rows ``[bounds[r], bounds[r + 1])`` (collective)."""
    ctx = dist.context()
    start = sum(sizes[:ctx.rank])
    stop = start + sizes[ctx.rank]
    pieces = [t[max(bounds[s], start) - start: max(min(bounds[s + 1], stop), max(bounds[s], start)) - start]
              for s in range(ctx.world_size)]
    return torch.cat(dist.all_to_all_variable(pieces))


def _mix64(x: Tensor) -> Tensor:
    """splitmix64's finaliser on int64 (wrapping arithmetic; logical shifts emulated by masking)."""
    # 0xbf58476d1ce4e5b9 and 0x94d049bb133111eb as signed int64
    for shift, factor in ((30, -4658895280553007687), (27, -7723592293110705685)):
        x = (x ^ ((x >> shift) & ((1 << (64 - shift)) - 1))) * factor
    return x ^ ((x >> 31) & ((1 << 33) - 1))


def keyed_normal(keys: Tensor, count: int) -> Tensor:
    """``count`` standard normal draws per key, a pure function of the key (Box-Muller on hashed bits).

    Shapes:
        keys: ``[n]`` int64 -> ``[n, count]`` float32.
    """
    pairs = (count + 1) // 2
    counters = torch.arange(2 * pairs, dtype=torch.int64, device=keys.device)
    bits = _mix64(_mix64(keys)[:, None] + counters * -7046029254386353131)  # 0x9e3779b97f4a7c15 (golden ratio)
    uniform = (((bits >> 40) & 0xFFFFFF).to(torch.float64) + 0.5) / 2**24  # 24 bits, in (0, 1)
    u1, u2 = uniform[:, :pairs], uniform[:, pairs:]
    radius = torch.sqrt(-2 * torch.log(u1))
    normal = torch.cat([radius * torch.cos(2 * math.pi * u2), radius * torch.sin(2 * math.pi * u2)], dim=1)
    return normal[:, :count].float()


def split_keys(ids: Tensor, step: int) -> Tensor:
    """The key of each Gaussian's split at ``step``, from its identity number (``ids``, carried in the
    densification state): the same on any rank and in any position of any shard, and independent of
    the rounding of its parameters, which differs in the last bits between rank counts."""
    return _mix64(_mix64(ids.long()) ^ step)


@torch.no_grad()
def keyed_split(params, optimizers, state: dict, mask: Tensor, step: int, revised_opacity: bool = False) -> None:
    """gsplat's ``ops.split`` (each selected Gaussian becomes two, offset by a sample of itself, scales
    divided by 1.6, moments zeroed) with the samples drawn by :func:`keyed_normal` from the Gaussian's
    identity number (``state["ids"]``, :func:`split_keys`) instead of the global random stream: a
    Gaussian splits into the same children whichever rank holds it and wherever it sits in its shard.
    Children and duplicates inherit their parent's number (the ops copy every state tensor)."""
    sel, rest = torch.where(mask)[0], torch.where(~mask)[0]
    scales = torch.exp(params["scales"][sel])
    rotmats = normalized_quat_to_rotmat(torch.nn.functional.normalize(params["quats"][sel], dim=-1))
    noise = keyed_normal(split_keys(state["ids"][sel], step), 6)
    noise = noise.reshape(-1, 2, 3).transpose(0, 1).to(scales.device)  # [2, n, 3] as gsplat's randn
    samples = torch.einsum("nij,nj,bnj->bni", rotmats, scales, noise)

    def param_fn(name: str, p: Tensor) -> Tensor:
        repeats = [2] + [1] * (p.dim() - 1)
        if name == "means":
            p_split = (p[sel] + samples).reshape(-1, 3)
        elif name == "scales":
            p_split = torch.log(scales / 1.6).repeat(2, 1)
        elif name == "opacities" and revised_opacity:
            p_split = torch.logit(1.0 - torch.sqrt(1.0 - torch.sigmoid(p[sel]))).repeat(repeats)
        else:
            p_split = p[sel].repeat(repeats)
        return torch.nn.Parameter(torch.cat([p[rest], p_split]), requires_grad=p.requires_grad)

    def optimizer_fn(key: str, v: Tensor) -> Tensor:
        return torch.cat([v[rest], v.new_zeros((2 * len(sel), *v.shape[1:]))])

    _update_param_with_optimizer(param_fn, optimizer_fn, params, optimizers)
    for k, v in state.items():
        if isinstance(v, Tensor):
            state[k] = torch.cat((v[rest], v[sel].repeat([2] + [1] * (v.dim() - 1))))


class ShardedStrategy(DefaultStrategy):
    """gsplat's ``DefaultStrategy`` with :func:`keyed_split` for its splits, so that runs on different
    numbers of ranks stay identical; the grow / prune criteria, duplication and pruning are gsplat's."""

    @torch.no_grad()
    def _grow_gs(self, params, optimizers, state, step):
        # gsplat 1.5.3's _grow_gs, with keyed_split in place of ops.split
        grads = state["grad2d"] / state["count"].clamp_min(1)
        is_grad_high = grads > self.grow_grad2d
        is_small = torch.exp(params["scales"]).max(dim=-1).values <= self.grow_scale3d * state["scene_scale"]
        is_dupli = is_grad_high & is_small
        is_split = is_grad_high & ~is_small
        if step < self.refine_scale2d_stop_iter:
            is_split |= state["radii"] > self.grow_scale2d
        n_dupli, n_split = int(is_dupli.sum()), int(is_split.sum())
        if n_dupli > 0:
            duplicate(params=params, optimizers=optimizers, state=state, mask=is_dupli)
        is_split = torch.cat([is_split, is_split.new_zeros(n_dupli)])  # new duplicates are not split
        if n_split > 0:
            keyed_split(params, optimizers, state, is_split, step, self.revised_opacity)
        return n_dupli, n_split


def _gaussians_from(params: dict[str, Tensor]) -> Gaussians:
    standard = ("means", "quats", "scales", "opacities", "sh0", "shN")
    return Gaussians(**{k: params[k] for k in standard}, extras={k: v for k, v in params.items() if k not in standard})


class ShardedTrainer(Trainer):
    """:class:`Trainer` with the Gaussians sharded over the ranks of the current process group.

    Every rank builds the same initial field (same seed), keeps its shard, and then trains as described
    in the module doc. Called on every rank; with one rank it is a single-process trainer with a batch
    of ``views_per_rank`` views per step.

    Args:
        train, config, out_dir, teacher_maps, test, name: as :class:`Trainer`.
        views_per_rank: training views each rank renders per step (``V``).
    """

    def __init__(self, train: Scene, config: TrainConfig, out_dir: str | pathlib.Path,
                 teacher_maps: dict[str, Tensor] | None = None, test: Scene | None = None,
                 name: str | None = None, views_per_rank: int = 1):
        self.ctx = dist.context()
        if not isinstance(views_per_rank, int) or views_per_rank < 1:
            raise ValueError(f"views_per_rank must be a positive int, got {views_per_rank!r}")
        self.views_per_rank = views_per_rank
        self.rebalances = 0  # how often the shards were evened out
        self.batch = self.ctx.world_size * views_per_rank
        super().__init__(train, config, out_dir, teacher_maps, test, name)
        if self.ctx.world_size > train.num_views:
            raise ValueError(f"{self.ctx.world_size} ranks for {train.num_views} training views: every rank needs "
                             "at least one view")
        self.strategy = ShardedStrategy(**{f.name: getattr(self.strategy, f.name)
                                           for f in dataclasses.fields(self.strategy)})
        bounds = shard_bounds(self.field.num_gaussians, self.ctx.world_size)
        mine = slice(bounds[self.ctx.rank], bounds[self.ctx.rank + 1])
        self._set_shard({k: p.detach()[mine] for k, p in self.field.splats.items()})
        self.strategy_state["ids"] = torch.arange(mine.start, mine.stop, device=self.device)

    # ----------------------------------------------------------------------------------- shards
    def _set_shard(self, params: dict[str, Tensor]) -> None:
        """Makes ``params`` this rank's Gaussians, with fresh optimizers and densification state."""
        self.field = self.field.with_gaussians(_gaussians_from(params)).to(self.device)
        self._build_optimizers()
        self.strategy_state = self.strategy.initialize_state(scene_scale=self.scene_scale)

    def _build_optimizers(self) -> None:
        super()._build_optimizers()
        scale_adam_for_batch([*self.optimizers.values(), self.decoder_optimizer, self.background_optimizer],
                             getattr(self, "batch", 1))

    def means_lr(self, step: int) -> float:
        return super().means_lr(step) * math.sqrt(getattr(self, "batch", 1))

    def shard_sizes(self) -> list[int]:
        """Number of Gaussians on every rank (collective)."""
        counts = torch.tensor([self.field.num_gaussians], device=self.device)  # NCCL moves CUDA tensors only
        return [int(t[0]) for t in dist.all_gather_variable(counts)]

    @property
    def global_gaussians(self) -> int:
        return sum(self.shard_sizes())

    def rebalance(self, force: bool = False) -> bool:
        """Redistributes the Gaussians (with Adam moments and statistics) into equal contiguous shards of the
        same global order when the largest shard is ``REBALANCE_TOLERANCE`` above the mean (collective)."""
        sizes = self.shard_sizes()
        mean = sum(sizes) / len(sizes)
        if not force and max(sizes) <= mean * (1 + REBALANCE_TOLERANCE):
            return False
        bounds = shard_bounds(sum(sizes), len(sizes))

        def move(_, t: Tensor) -> Tensor:
            return redistribute_rows(t, sizes, bounds)

        _update_param_with_optimizer(lambda name, p: torch.nn.Parameter(move(name, p.detach())), move,
                                     self.field.splats, self.optimizers)
        for key in STRATEGY_TENSORS:
            if self.strategy_state.get(key) is not None:
                self.strategy_state[key] = move(key, self.strategy_state[key])
        self.rebalances += 1
        return True

    # ----------------------------------------------------------------------------------- render
    def render_views(self, scene: Scene, indices: list[int], background: Tensor, **kwargs) -> FieldRender:
        """Renders this rank's views ``indices`` of ``scene`` (possibly none) from all shards (collective)."""
        g = self.field.gaussians
        degree = kwargs.pop("sh_degree", None)
        degree = g.sh_degree if degree is None else min(degree, g.sh_degree)
        with_features = kwargs.pop("with_features", True)
        render, features, alpha, meta = rasterize_distributed(
            g.means, g.quats, g.activated_scales, g.activated_opacities, g.sh_coeffs,
            scene.viewmats[indices].to(self.device), scene.Ks[indices].to(self.device), scene.width, scene.height,
            features=g.features if with_features else None, sh_degree=degree, backgrounds=background,
            backend=self.config.backend, **kwargs)
        if features is not None:
            features = features.permute(0, 3, 1, 2)
            if self.field.decoder is not None:
                features = self.field.decoder(features)
        return FieldRender(render.permute(0, 3, 1, 2), features, alpha.permute(0, 3, 1, 2), meta)

    # ----------------------------------------------------------------------------------- train
    def train_step(self) -> dict[str, float]:
        cfg, step, scene, ctx = self.config, self.step, self.train_scene, self.ctx
        # the whole batch is drawn on every rank from the same stream: the ranks agree on it
        batch = torch.randint(scene.num_views, (self.batch,), generator=self.generator).tolist()
        mine = batch[ctx.rank * self.views_per_rank:(ctx.rank + 1) * self.views_per_rank]
        self.optimizers["means"].param_groups[0]["lr"] = self.means_lr(step)
        background = self.background(training=True)
        out = self.render_views(scene, mine, background, sh_degree=self.sh_degree_at(step),
                                with_features=self.use_features,
                                feature_grad_to_geometry=cfg.loss.feature_grad_to_geometry)
        self.strategy.step_pre_backward(self.field.splats, self.optimizers, self.strategy_state, step, out.meta)
        loss = out.rgb.sum() * 0  # keeps the graph (and so the backward's all-to-all) on every rank
        sums = torch.zeros(3, dtype=torch.float64)  # rgb loss, feature loss, PSNR over this rank's views
        for v, index in enumerate(mine):
            target = self.target_image(scene, index, background)
            rgb_loss = image_loss(out.rgb[v:v + 1], target, cfg.loss.lambda_dssim, padding="same")
            view_loss = rgb_loss
            sums[0] += float(rgb_loss.detach())
            sums[2] += psnr(out.rgb[v:v + 1].detach().clamp(0, 1), target)
            if self.use_features:
                teacher = self.teacher_maps[scene.names[index]].to(self.device)
                pred = resize_to(out.features[v:v + 1], tuple(teacher.shape[1:]))
                feature_loss = feature_distill_loss(pred, teacher[None], cfg.loss.feature_kind)
                view_loss = view_loss + cfg.loss.feature_weight * feature_loss
                sums[1] += float(feature_loss.detach())
            loss = loss + view_loss / self.batch
        self._check_finite(step + 1, loss)
        loss.backward()
        self._sum_replicated_grads()
        self._optimizer_step()
        self.strategy.step_post_backward(self.field.splats, self.optimizers, self.strategy_state, step, out.meta)
        d = cfg.densify
        if d.enabled and step >= d.refine_start_iter and step % d.refine_every == 0:
            self.rebalance()
        self._check_finite(step + 1)
        self._reset_opacities(step)
        self.step += 1
        sums = dist.all_reduce_sum(sums.to(self.device)).cpu() / self.batch
        logs = {"rgb_loss": float(sums[0]), "psnr": float(sums[2])}
        if self.use_features:
            logs["feature_loss"] = float(sums[1])
        return logs

    def _sum_replicated_grads(self) -> None:
        """Decoder and learned-background gradients: each rank holds its views' part; all ranks need the sum."""
        params = list(self.field.decoder.parameters()) if self.field.decoder is not None else []
        if self.learned_background is not None:
            params.append(self.learned_background)
        for p in params:
            grad = p.grad if p.grad is not None else torch.zeros_like(p)
            p.grad = dist.all_reduce_sum(grad)

    def train(self, progress: bool = True, until: int | None = None) -> dict[str, float]:
        """:meth:`Trainer.train` with the progress bar, TensorBoard and reports on rank 0 only;
        ``num_gaussians`` in the metrics counts every shard."""
        metrics = super().train(progress=progress and self.ctx.is_main, until=until)
        metrics["num_gaussians"] = self.global_gaussians
        metrics["ranks"] = self.ctx.world_size
        metrics["views_per_step"] = self.batch
        return metrics

    @property
    def writes_reports(self) -> bool:
        return self.ctx.is_main

    # ----------------------------------------------------------------------------------- eval
    @torch.no_grad()
    def evaluate(self, scene: Scene | None = None, teacher_maps: dict[str, Tensor] | None = None) -> dict[str, float]:
        """:meth:`Trainer.evaluate` over all views of ``scene``, split across ranks (view ``k R + r`` on rank
        ``r``), with the metric sums reduced once; every rank returns the same means."""
        scene = self.test_scene if scene is None else scene
        if scene is None:
            raise ValueError("no scene to evaluate: pass one or give the trainer a test split")
        maps = self.teacher_maps if teacher_maps is None else teacher_maps
        background = self.background()
        ctx = self.ctx
        sums = torch.zeros(5, dtype=torch.float64)  # psnr, ssim, views, cosine, views with a teacher map
        for first in range(0, scene.num_views, ctx.world_size):
            index = first + ctx.rank
            mine = [index] if index < scene.num_views else []
            out = self.render_views(scene, mine, background, with_features=self.use_features)
            if not mine:
                continue
            rgb = out.rgb[0].clamp(0, 1)
            target = self.target_image(scene, index, background)[0]
            sums[0] += psnr(rgb, target)
            sums[1] += image_ssim(rgb, target)
            sums[2] += 1
            name = scene.names[index]
            if self.use_features and maps is not None and name in maps:
                teacher = maps[name].to(self.device)
                sums[3] += feature_cosine(resize_to(out.features, tuple(teacher.shape[1:]))[0], teacher)
                sums[4] += 1
        sums = dist.all_reduce_sum(sums.to(self.device)).cpu()
        metrics = {"psnr": float(sums[0] / sums[2]), "ssim": float(sums[1] / sums[2])}
        if sums[4] > 0:
            metrics["feature_cosine"] = float(sums[3] / sums[4])
        return metrics

    # ----------------------------------------------------------------------------------- checkpoints
    @property
    def checkpoint_path(self) -> pathlib.Path:
        """The manifest naming the last complete sharded checkpoint."""
        return self.out_dir / CHECKPOINT_DIR / "manifest.json"

    def shard_state(self) -> dict:
        """This rank's share of a checkpoint: its Gaussians, their Adam moments and statistics."""
        adam = {}
        for name, optimizer in self.optimizers.items():
            state = optimizer.state.get(self.field.splats[name], {})
            adam[name] = {k: v.detach().cpu().clone() for k, v in state.items()}
        return {"params": {k: p.detach().cpu().clone() for k, p in self.field.splats.items()}, "adam": adam,
                "strategy": {k: (v.cpu().clone() if isinstance(v, Tensor) else v)
                             for k, v in self.strategy_state.items()}}

    def common_state(self) -> dict:
        """What every rank shares: config, step, the batch stream, replicated modules, history."""
        full = self.state()
        return {k: full[k] for k in ("step", "config", "scene", "field_config", "decoder_optimizer", "background",
                                     "generator", "history", "fingerprint")} | {
            "decoder": None if self.field.decoder is None else self.field.decoder.state_dict(),
            "world_size": self.ctx.world_size}

    def save_checkpoint(self, path: str | pathlib.Path | None = None) -> pathlib.Path:
        """Writes this rank's shard (every rank calls it); returns the manifest path. ``path``: a folder
        to write the checkpoint into instead of ``out_dir``."""
        root = pathlib.Path(path) / CHECKPOINT_DIR if path is not None else self.checkpoint_path.parent
        common = self.common_state() if self.ctx.is_main else {}
        manifest = save_sharded_checkpoint(root, self.step, self.shard_state(), common)
        if path is None:
            self.checkpoint_step = self.step
        return manifest

    def resume(self, path: str | pathlib.Path | None = None) -> int:
        """Restores the sharded checkpoint named by a manifest (default: this run's), written by any number
        of ranks: shards are joined in global order and cut into this job's shards. Returns the step."""
        shards, common = load_sharded_checkpoint(pathlib.Path(path) if path is not None else self.checkpoint_path)
        if common["field_config"] != self.field.config_dict():
            raise ValueError(f"checkpoint field {common['field_config']} does not match {self.field.config_dict()}")

        self._set_shard({k: reslice(shards, lambda s: s["params"][k]) for k in shards[0]["params"]})
        for name, optimizer in self.optimizers.items():
            saved = shards[0]["adam"][name]
            if saved:
                param = self.field.splats[name]
                optimizer.state[param] = {
                    k: v.clone() if k == "step" else reslice(shards, lambda s: s["adam"][name][k]).to(self.device)
                    for k, v in saved.items()}
        for key, value in shards[0]["strategy"].items():
            self.strategy_state[key] = (reslice(shards, lambda s: s["strategy"][key]).to(self.device)
                                        if key in STRATEGY_TENSORS and value is not None else value)
        if self.field.decoder is not None:
            self.field.decoder.load_state_dict(common["decoder"])
            self.decoder_optimizer.load_state_dict(common["decoder_optimizer"])
        if self.learned_background is not None and common.get("background") is not None:
            with torch.no_grad():
                self.learned_background.copy_(common["background"]["colour"])
            self.background_optimizer.load_state_dict(common["background"]["optimizer"])
        self.generator.set_state(common["generator"])
        self.step = self.checkpoint_step = int(common["step"])
        self.history = common["history"]
        return self.step

    # ----------------------------------------------------------------------------------- export
    @torch.no_grad()
    def merged_field(self) -> FeatureField:
        """All shards joined in global order as one field (collective; every rank gets it)."""
        params = {k: torch.cat(dist.all_gather_variable(p.detach())) for k, p in self.field.splats.items()}
        return self.field.with_gaussians(_gaussians_from(params))


def train_sharded(train: Scene, config: TrainConfig, out_dir: str | pathlib.Path,
                  teacher_maps: dict[str, Tensor] | None = None, test: Scene | None = None, name: str | None = None,
                  views_per_rank: int = 1, resume: bool = False, progress: bool = True,
                  fingerprint: dict | None = None) -> dict:
    """The per-rank program of a sharded run: trains, then rank 0 writes ``point_cloud.ply`` (all shards
    merged) beside the sharded checkpoint. Returns the final metrics (equal on every rank)."""
    trainer = ShardedTrainer(train, config, out_dir, teacher_maps, test, name, views_per_rank)
    trainer.fingerprint = fingerprint
    if resume and trainer.checkpoint_path.is_file():
        trainer.resume()
    metrics = trainer.train(progress=progress)
    merged = trainer.merged_field()
    if dist.is_main():
        merged.save(pathlib.Path(out_dir) / "point_cloud.ply")
    dist.barrier()
    return metrics


def train_field_sharded(scene_dir: str | pathlib.Path, config: TrainConfig, out_dir: str | pathlib.Path,
                        cache_dir: str | pathlib.Path, resume: bool = False, progress: bool = True, plain: bool = False,
                        downscale: int = 1, overwrite: bool = False, nproc: int = 2,
                        timeout_s: float = dist.DEFAULT_TIMEOUT_S, views_per_rank: int = 1, **teacher_kwargs) -> dict:
    """:func:`distill3d.fields.pipeline.train_field` on ``nproc`` local ranks, or on the ranks of the
    torchrun job this process belongs to, each rendering ``views_per_rank`` views per step. Rank 0 (or
    the launching process) guards ``out_dir``; the scene is read (by the launching process, or by every
    rank of a torchrun job) and checked against the batch before any rank starts work; then the ranks
    share the teacher feature extraction into the cache (:func:`_prepare_and_train`) and train. Writes
    ``point_cloud.ply`` (merged), ``metrics.json`` and the sharded checkpoint; returns the metrics.

    Raises:
        ValueError: ``views_per_rank`` below 1, or more views per step (ranks x ``views_per_rank``) than
            training views (before any rank starts).
    """
    from .pipeline import field_fingerprint, field_run_directory, finished_metrics, read_splits

    if isinstance(views_per_rank, bool) or not isinstance(views_per_rank, int) or views_per_rank < 1:
        raise ValueError(f"--views-per-rank must be a positive number of views, got {views_per_rank!r}")
    check_device(config.device)  # as the single-process trainer does, before any rank starts
    resolve_backend(config.backend, config.device)
    torchrun = dist.in_torchrun_job()
    ctx = dist.init_from_env(config.device, timeout_s) if torchrun else None
    main = ctx is None or ctx.is_main
    out_dir, scene_dir = pathlib.Path(out_dir), resolve_scene_dir(scene_dir)
    teacher = None if plain else config.teacher
    fingerprint = field_fingerprint(scene_dir, config, teacher, downscale, teacher_kwargs)
    guard = (field_run_directory(out_dir, scene_dir, fingerprint, teacher, downscale, resume, overwrite, CHECKPOINT_DIR)
             if main else contextlib.nullcontext())
    with guard as run:
        splits = read_splits(scene_dir, downscale, config.data)
        ranks = ctx.world_size if ctx is not None else nproc
        views = splits.train.num_views
        if ranks * views_per_rank > views:
            what = f"--nproc {ranks}" + (f" x --views-per-rank {views_per_rank}" if views_per_rank > 1 else "")
            raise ValueError(f"{what} is more than the {views} training views of {scene_dir.name}: a step renders "
                             "ranks x views-per-rank views")
        manifest = out_dir / CHECKPOINT_DIR / "manifest.json"
        resumed = (run.resumed if main else resume) and manifest.is_file()
        if resumed and main and not torchrun:
            done = read_json_object(manifest, what="checkpoint manifest").get("step")
            metrics = finished_metrics(run, out_dir, done, config.steps)
            if metrics is not None:
                return metrics
        metrics = dist.launch(_prepare_and_train, nproc, scene_dir, splits, teacher, cache_dir, config, out_dir,
                              views_per_rank, resumed, progress, fingerprint, teacher_kwargs, timeout_s=timeout_s,
                              device="cuda" if config.device.startswith("cuda") else "cpu")
        if main:
            write_json_atomic(out_dir / "metrics.json", {"teacher": teacher, **metrics})
            run.complete(step=metrics["step"])
    return metrics


def _prepare_and_train(scene_dir: pathlib.Path, splits: SceneSplits, teacher: str | None, cache_dir: str | pathlib.Path,
                       config: TrainConfig, out_dir: pathlib.Path, views_per_rank: int, resume: bool, progress: bool,
                       fingerprint: dict, teacher_kwargs: dict) -> dict:
    """The per-rank program of :func:`train_field_sharded`: this rank's share of the teacher maps into the
    cache, a barrier, every map read back (:func:`distill3d.fields.pipeline.prepare_scene`, collective),
    then :func:`train_sharded`."""
    from .pipeline import prepare_scene

    prepared = prepare_scene(scene_dir, teacher, cache_dir, progress and dist.is_main(), data=config.data,
                             splits=splits, **teacher_kwargs)
    return train_sharded(prepared.train, config, out_dir, prepared.teacher_maps, prepared.test, prepared.name,
                         views_per_rank, resume, progress, fingerprint)


__all__ = ["REBALANCE_TOLERANCE", "ShardedTrainer", "redistribute_rows", "scale_adam_for_batch", "shard_bounds", "train_field_sharded",
           "train_sharded"]
