"""End-to-end PRD: scene folder -> trained relightable Gaussians, metrics and exports.

``train_prd`` reads both splits (optionally area-downsampled, which CPU runs need), trains
(:class:`PRDTrainer`, resuming ``out_dir/checkpoint.pt`` on request) and writes ``metrics.json``,
``run.json`` (the scene, downsampling and split, so ``relight`` finds the views again) and the exports of
:func:`distill3d.inverse.relight.export`. The radiance pre-training is not part of the run folder: it is
a shared stage in ``radiance_cache/`` beside it (see :func:`train_prd`), so the (a) and (b) runs of one
scene and radiance config (with and without the radiance fallback) pre-train once.
"""
from __future__ import annotations

import dataclasses
import logging
import pathlib

from distillcore.dist import DEFAULT_TIMEOUT_S, in_torchrun_job
from distillcore.runs import RunDirectory, fingerprint_key, run_fingerprint, strip_volatile
from distillcore.serialization import write_json_atomic
from distill3d.data import Scene, resolve_scene_dir
from distill3d.data.splits import load_scene_splits
from distill3d.fields.config import SceneDataConfig

from .config import PRDConfig
from .relight import export
from .trainer import PRDTrainer

log = logging.getLogger(f"distillkit.{__name__}")  # the hierarchy distillcore.config_cli prints

def load_splits(scene_dir: str | pathlib.Path, downsample: int = 1, data: SceneDataConfig | None = None,
                background: str = "scene") -> tuple[Scene, Scene | None]:
    """Train and test split of a scene folder at ``1 / downsample`` resolution (``distill3d.data.splits``:
    Blender's test file or COLMAP's every ``data.test_every``-th image; COLMAP's ``images_<downsample>``
    photos when present), moved onto the fixed ``background`` colour (``distill3d.fields.background``:
    every PRD render composites over ``scene.background``, so training, evaluation and relighting agree)."""
    from distill3d.fields.background import with_background

    data = data or SceneDataConfig()
    splits = load_scene_splits(scene_dir, test_every=data.test_every, images=data.images, downsample=downsample)
    train = with_background(splits.train.downsample(splits.downsample), background)
    test = splits.test.downsample(splits.downsample) if splits.test is not None else None
    return train, (with_background(test, background) if test is not None else None)


def train_prd(scene_dir: str | pathlib.Path, config: PRDConfig, out_dir: str | pathlib.Path, *, downsample: int = 1,
              resume: bool = False, progress: bool = True, overwrite: bool = False,
              radiance_cache: str | pathlib.Path | None = None, nproc: int = 1, views_per_rank: int = 1,
              dist_timeout: float = DEFAULT_TIMEOUT_S) -> tuple[PRDTrainer | None, dict]:
    """Trains PRD on a scene folder and writes metrics, run info and exports under ``out_dir``.

    ``nproc > 1``, ``views_per_rank > 1``, a torchrun job or resuming a sharded run (``checkpoint_dist/``)
    trains with the Gaussians sharded over the
    ranks (:func:`distill3d.inverse.distributed.train_prd_sharded`; the returned trainer is then None).

    ``out_dir`` is guarded by :class:`distillcore.runs.RunDirectory` (writable, locked, an existing run
    continued only with ``resume`` and a matching fingerprint, replaced only with ``overwrite``).

    The radiance pre-training is a shared, cached stage: it lives in
    ``radiance_cache/<scene>-<key>`` (default cache: ``radiance_cache`` beside ``out_dir``), where
    ``key`` hashes its fingerprint: the scene's content, ``downsample``, the radiance config (steps,
    schedules, seed, backend, data split) and the distillkit version. Every PRD run of the same scene and
    radiance settings, with or without the radiance fallback, reuses the one pre-training found there;
    any other setting gets its own entry. A run that finds the entry being trained waits for it.
    ``run.json`` records the entry and whether it was reused (``radiance.reused``).
    """
    # a sharded run resumes as one (on any number of ranks, one included)
    sharded_run = resume and (pathlib.Path(out_dir) / "checkpoint_dist" / "manifest.json").is_file()
    if nproc > 1 or views_per_rank != 1 or in_torchrun_job() or sharded_run:
        from .distributed import train_prd_sharded

        return None, train_prd_sharded(scene_dir, config, out_dir, nproc=nproc, views_per_rank=views_per_rank,
                                       downsample=downsample, resume=resume, progress=progress, overwrite=overwrite,
                                       radiance_cache=radiance_cache, timeout_s=dist_timeout)
    scene_dir, out_dir = resolve_scene_dir(scene_dir), pathlib.Path(out_dir)  # a folder or a bundled scene's name
    fingerprint = run_fingerprint(scene=scene_dir, config=config.to_dict(), downsample=downsample)
    # the pre-training's inputs: the same scene hash, only the radiance part of the config
    radiance_fp = {**fingerprint, "config": strip_volatile(config.radiance.to_dict()), "stage": "radiance"}
    cache = pathlib.Path(radiance_cache) if radiance_cache is not None else out_dir.parent / "radiance_cache"
    entry = cache / f"{scene_dir.name}-{fingerprint_key(radiance_fp)}"
    info = {"scene": str(scene_dir.resolve()), "downsample": downsample,
            "data": dataclasses.asdict(config.radiance.data), "radiance": {"dir": str(entry.resolve())}}
    with RunDirectory(out_dir, fingerprint=fingerprint, resume=resume, overwrite=overwrite, markers=("checkpoint.pt",),
                      outputs=("metrics.json", "export", "radiance", "relit"), info=info) as run:
        train, test = load_splits(scene_dir, downsample, config.radiance.data, config.radiance.background)
        trainer = PRDTrainer(train, config, out_dir, test, name=scene_dir.name)
        trainer.fingerprint, trainer.radiance_dir, trainer.radiance_fingerprint = fingerprint, entry, radiance_fp
        if run.resumed and trainer.checkpoint_path.is_file():
            trainer.resume()
        reused = None
        if trainer.model is None:
            reused = shared_radiance_pretraining(trainer, progress)
        metrics = trainer.train(progress=progress)
        write_json_atomic(out_dir / "metrics.json", {"history": trainer.history, **metrics})
        export(trainer.model, out_dir / "export", test, backend=config.radiance.backend)
        run.complete(radiance={"dir": str(entry.resolve()), "reused": reused})
    return trainer, metrics


def shared_radiance_pretraining(trainer: PRDTrainer, progress: bool = True) -> bool:
    """Runs ``trainer``'s radiance pre-training in its shared folder ``trainer.radiance_dir`` (locked;
    a run finding it locked waits for the holder), resuming or reusing what is there when its
    fingerprint matches; returns whether a finished pre-training was reused."""
    entry, fingerprint = trainer.radiance_dir, trainer.radiance_fingerprint
    with RunDirectory(entry, fingerprint=fingerprint, resume=True, wait=True, markers=("checkpoint.pt",),
                      info={"stage": "radiance pre-training"}) as stage:
        reused = stage.resumed and (stage.previous or {}).get("status") == "complete"
        log.info("radiance pre-training: %s %s", "reusing" if reused else "training into", entry)
        metrics = trainer.pretrain_radiance(progress)
        stage.complete(metrics=metrics)
    return reused
