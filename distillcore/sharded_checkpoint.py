"""Sharded checkpoints of a model whose rows (Gaussians) are split over the ranks of a job.

Layout under ``root``::

    step_NNNNNNNN/shard_RRRR.pt   one per rank: its rows and their optimizer moments
    step_NNNNNNNN/common.pt       rank 0: what every rank shares (config, step, replicated modules)
    manifest.json                 {"step", "world_size", "folder"}: the last complete step folder

Every rank writes its shard atomically; after a barrier rank 0 writes the manifest (atomically) and
only then deletes older step folders, so a rank that dies mid-write leaves the manifest on the previous
complete checkpoint and no half-written file. A save never writes into the folder the manifest names:
a step saved again (a finished run saves its last step after the evaluation too; a run resumed there,
maybe on another rank count, saves it once more) goes to ``step_NNNNNNNN_b`` (and back), because shards
rewritten in place would sit beside the old ones under the old manifest until it is replaced, and a
crash in between would join old and new rows. Reading joins the shards of any former rank count in
global (rank) order; :func:`reslice` cuts the joined rows into the current job's contiguous shards.
"""
from __future__ import annotations

import json
import pathlib
import shutil
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from distillcore import dist
from distillcore.serialization import load_state, save_atomic, write_json_atomic

MANIFEST = "manifest.json"


def save_sharded_checkpoint(root: str | pathlib.Path, step: int, shard_state: dict, common_state: dict) -> pathlib.Path:
    """Writes this rank's ``shard_state`` (and on rank 0 ``common_state``) for ``step`` under ``root``
    (collective: every rank calls it); returns the manifest's path.

    Args:
        root: the checkpoint folder (manifest and step folders).
        step: the training step saved (names the step folder).
        shard_state: this rank's rows and their optimizer moments (plain data, see
            :mod:`distillcore.serialization`).
        common_state: what every rank shares; written by rank 0 only (other ranks may pass ``{}``).
    """
    ctx = dist.context()
    root = pathlib.Path(root)
    step_dir = root / _step_folder(root, step)
    save_atomic(shard_state, step_dir / f"shard_{ctx.rank:04d}.pt")
    if ctx.is_main:
        save_atomic(common_state, step_dir / "common.pt")
    dist.barrier()  # every shard is on disk before the manifest may name them
    manifest = root / MANIFEST
    if ctx.is_main:
        write_json_atomic(manifest, {"step": step, "world_size": ctx.world_size, "folder": step_dir.name})
        for old in root.glob("step_*"):
            if old.name != step_dir.name:
                shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return manifest


def _step_folder(root: pathlib.Path, step: int) -> str:
    """The folder to save ``step`` into: never the one the manifest names now (module doc). Every rank reads
    the same manifest: rank 0 replaces it only between the two barriers of a save."""
    name = f"step_{step:08d}"
    try:
        current = json.loads((root / MANIFEST).read_text()).get("folder")
    except (OSError, ValueError, AttributeError):  # no checkpoint yet, or one that cannot be resumed anyway
        current = None
    return f"{name}_b" if current == name else name


def load_sharded_checkpoint(manifest_path: str | pathlib.Path) -> tuple[list[dict], dict]:
    """``(shards in rank order, common)`` of the checkpoint a manifest names, read safely
    (:func:`distillcore.serialization.load_state`).

    Args:
        manifest_path: the ``manifest.json`` of a checkpoint folder.

    Raises:
        ValueError: the manifest or a file it names is missing or unreadable.
    """
    manifest_path = pathlib.Path(manifest_path)
    try:
        manifest = json.loads(manifest_path.read_text())
        step_dir = manifest_path.parent / manifest["folder"]
        world_size = manifest["world_size"]
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise TypeError(f"world_size {world_size!r} is not a positive int")
        shards = [load_state(step_dir / f"shard_{r:04d}.pt", what="checkpoint shard") for r in range(world_size)]
        common = load_state(step_dir / "common.pt", what="checkpoint")
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"{manifest_path} does not name a complete sharded checkpoint ({err})") from err
    return shards, common


def reslice(shards: Sequence[dict], get: Callable[[dict], Tensor]) -> Tensor:
    """This rank's contiguous slice (:func:`distillcore.dist.shard_bounds`) of the rows ``get(shard)`` of
    every saved shard joined in rank order.

    Args:
        shards: the saved shards in rank order (:func:`load_sharded_checkpoint`).
        get: the tensor of one shard to join (e.g. ``lambda s: s["model"][key]``).

    Shapes:
        ``get(shard)`` ``[n_s, *T]`` for every saved shard -> ``[n_r, *T]``, this rank's rows of the joined
        ``sum_s n_s``.
    """
    joined = torch.cat([get(s) for s in shards])
    ctx = dist.context()
    bounds = dist.shard_bounds(joined.shape[0], ctx.world_size)
    return joined[bounds[ctx.rank]:bounds[ctx.rank + 1]]


__all__ = ["MANIFEST", "load_sharded_checkpoint", "reslice", "save_sharded_checkpoint"]
