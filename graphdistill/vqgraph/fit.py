"""Training loop with validation-only model selection, early stopping and resumable checkpoints.

Shared by the teacher and the student. The loop only ever sees a training step and a validation
evaluation: test nodes cannot influence which epoch is kept (the reference VQGraph/GLNN code selects
on test accuracy). The kept epoch maximises validation accuracy, ties broken by lower validation loss.
"""
from __future__ import annotations

import copy
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from distillcore import dist
from graphdistill.vqgraph.config import TrainConfig
from distillcore.determinism import deterministic_algorithms
from distillcore.divergence import check_finite
from distillcore.serialization import load_state, save_atomic


def wrap_data_parallel(module: nn.Module) -> nn.Module:
    """DDP across the ranks of ``distillcore.dist`` (the module itself in one process). Buffers are not
    broadcast: a codebook is kept equal by all-reduced EMA statistics, not copied from rank 0."""
    if not dist.context().distributed:
        return module
    return nn.parallel.DistributedDataParallel(module, broadcast_buffers=False)


def average_gradients(module: nn.Module) -> None:
    """Replaces each gradient by its mean over ranks (one all-reduce of all gradients; nothing in one
    process). What DDP does, for models trained through a method other than ``forward``."""
    ctx = dist.context()
    if not ctx.distributed:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    flat = dist.all_reduce_sum(torch.cat([g.reshape(-1) for g in grads])) / ctx.world_size
    for grad, part in zip(grads, flat.split([g.numel() for g in grads])):
        grad.copy_(part.view_as(grad))


@dataclass
class FitResult:
    best_epoch: int
    best_val_acc: float
    best_val_loss: float
    history: list[dict] = field(default_factory=list)  # one {"epoch", "loss", "val_acc", "val_loss"} per evaluation


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_step: Callable[[], float],
    evaluate: Callable[[], tuple[float, float]],
    config: TrainConfig,
    *,
    checkpoint: str | os.PathLike | None = None,
    desc: str = "train",
    progress: bool = True,
) -> FitResult:
    """Runs ``train_step`` per epoch, ``evaluate() -> (val_acc, val_loss)`` every ``eval_every`` epochs,
    stops after ``patience`` evaluations without improvement and leaves ``model`` at its best epoch.

    With ``checkpoint`` set, the full state (weights, optimizer, best weights, counters, RNG states)
    is written there atomically every ``checkpoint_every`` epochs and a run resumes from it; the file
    is removed when training finishes.
    """
    best_key, best_state, best_epoch, stale, start = (float("-inf"), float("-inf")), None, 0, 0, 1
    history: list[dict] = []
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        state = load_state(path, what="training checkpoint")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        best_key, best_state, best_epoch = tuple(state["best_key"]), state["best_state"], state["best_epoch"]
        stale, start, history = state["stale"], state["epoch"] + 1, state["history"]
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])

    bar = tqdm(range(start, config.epochs + 1), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        with deterministic_algorithms():  # a fixed seed repeats bit for bit (see distillcore.determinism)
            loss = train_step()
        check_finite(epoch, loss, checkpoint=path,
                     hint="lower the learning rate (--teacher-train.lr / --student-train.lr)")
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            val_acc, val_loss = evaluate()
            history.append({"epoch": epoch, "loss": loss, "val_acc": val_acc, "val_loss": val_loss})
            key = (val_acc, -val_loss)
            if key > best_key:
                best_key, best_epoch, stale = key, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
            bar.set_postfix(loss=f"{loss:.3f}", val=f"{val_acc:.3f}", best=f"{best_key[0]:.3f}@{best_epoch}")
            if stale >= config.patience:
                break
        if path is not None and epoch % config.checkpoint_every == 0:
            save_atomic({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "best_key": best_key,
                "best_state": best_state, "best_epoch": best_epoch, "stale": stale, "epoch": epoch,
                "history": history, "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
            }, path)
    if best_state is None:
        raise RuntimeError("training ran no evaluation (epochs < 1?)")
    model.load_state_dict(best_state)
    if path is not None and path.exists():
        path.unlink()
    return FitResult(best_epoch, best_key[0], -best_key[1], history)
