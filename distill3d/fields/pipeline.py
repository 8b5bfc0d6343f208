"""End-to-end Feature 3DGS: scene folder + teacher name -> trained field, metrics, PLY.

1. read the train / test splits (``distill3d.data.load_scene``; missing poses or one view fail here);
2. teacher maps of every image through the on-disk :class:`~distill3d.teachers.FeatureCache`;
3. train (:class:`~distill3d.fields.trainer.Trainer`), resuming from ``out_dir/checkpoint.pt`` if asked;
4. write ``out_dir/point_cloud.ply`` (3DGS columns + ``feat_*``) and ``out_dir/metrics.json``.
"""
from __future__ import annotations

import dataclasses
import logging
import pathlib
from dataclasses import dataclass

from torch import Tensor

from distill3d.data import Scene, resolve_scene_dir
from distill3d.data.splits import SceneSplits, load_scene_splits
from distill3d.teachers import build_teacher, scene_features
from distill3d.teachers.cache import DEFAULT_CACHE

from distillcore.dist import DEFAULT_TIMEOUT_S, in_torchrun_job
from distillcore.runs import RunDirectory, RunError, run_fingerprint
from distillcore.serialization import read_json_object, write_json_atomic

from .config import SceneDataConfig, TrainConfig
from .trainer import Trainer, load_field_checkpoint

log = logging.getLogger(f"distillkit.{__name__}")  # the hierarchy distillcore.config_cli prints


@dataclass
class PreparedScene:
    name: str
    train: Scene
    test: Scene | None
    teacher_maps: dict[str, Tensor] | None


def read_splits(scene_dir: str | pathlib.Path, downscale: int = 1, data: SceneDataConfig | None = None) -> SceneSplits:
    """Both splits of ``scene_dir`` as the teachers see them (``distill3d.data.splits``: Blender's test
    file, COLMAP's every-``test_every``-th image; a COLMAP ``images_<downscale>`` folder when present),
    test view names prefixed with ``test_`` where they repeat train names (they key the teacher maps).
    ``downsample`` of the result is the reduction still to apply."""
    data = data or SceneDataConfig()
    splits = load_scene_splits(scene_dir, test_every=data.test_every, images=data.images, downsample=downscale)
    if splits.test is not None and set(splits.train.names) & set(splits.test.names):
        splits = dataclasses.replace(splits, test=_prefixed(splits.test, "test_"))
    return splits


def prepare_scene(scene_dir: str | pathlib.Path, teacher: str | None, cache_dir: str | pathlib.Path = DEFAULT_CACHE,
                  progress: bool = True, downscale: int = 1, data: SceneDataConfig | None = None,
                  splits: SceneSplits | None = None, **teacher_kwargs) -> PreparedScene:
    """Loads both splits (:func:`read_splits`, or takes ``splits`` already read) and, unless ``teacher``
    is None, their teacher maps; then reduces the images to ``1/downscale`` resolution (teachers see the
    images as read, so their grids do not shrink; a COLMAP ``images_<downscale>`` folder, when present,
    is read instead and nothing is left to reduce).

    Called on every rank of a process group, the ranks share the extraction (collective):
    :func:`distill3d.teachers.scene_features` has each rank compute every ``R``-th view into the cache.
    """
    scene_dir = resolve_scene_dir(scene_dir)
    splits = splits if splits is not None else read_splits(scene_dir, downscale, data)
    train, test, downscale = splits.train, splits.test, splits.downsample
    maps = None
    if teacher is not None:
        scenes = [train] + ([test] if test is not None else [])
        maps = scene_features(scenes, scene_dir.name, build_teacher(teacher, **teacher_kwargs), cache_dir, progress)
    train = train.downsample(downscale)
    test = test.downsample(downscale) if test is not None else None
    return PreparedScene(scene_dir.name, train, test, maps)


def _prefixed(scene: Scene, prefix: str) -> Scene:
    return dataclasses.replace(scene, names=[prefix + n for n in scene.names])


def finished_metrics(run: RunDirectory, out_dir: pathlib.Path, step: int | None, steps: int) -> dict | None:
    """The saved metrics of a resumed run already at ``steps`` with its outputs written (``run`` is marked
    complete), else None: a finished run is reported, not trained (or timed) again for zero steps."""
    outputs = (out_dir / "metrics.json", out_dir / "point_cloud.ply")
    if step != steps or not all(p.is_file() for p in outputs):
        return None
    log.warning("%s: already complete at step %d (nothing to do; a larger --steps trains further)", out_dir, steps)
    run.complete(step=steps)
    return read_json_object(outputs[0], what="metrics file")


def train_field(scene_dir: str | pathlib.Path, config: TrainConfig, out_dir: str | pathlib.Path,
                cache_dir: str | pathlib.Path = DEFAULT_CACHE, resume: bool = False, progress: bool = True,
                plain: bool = False, downscale: int = 1, overwrite: bool = False, nproc: int = 1,
                dist_timeout: float = DEFAULT_TIMEOUT_S, views_per_rank: int = 1,
                **teacher_kwargs) -> tuple[Trainer | None, dict]:
    """Trains a feature field (or plain 3DGS with ``plain=True``) and writes the PLY and metrics.

    ``nproc > 1``, ``views_per_rank > 1``, a torchrun job or resuming a sharded run (``checkpoint_dist/``)
    trains with the Gaussians sharded over the
    ranks, each rendering ``views_per_rank`` views per step
    (:func:`distill3d.fields.distributed.train_field_sharded`; the returned trainer is then None).

    ``out_dir`` is guarded by :class:`distillcore.runs.RunDirectory` before any work: checked writable,
    locked against a second run, and an existing run there is continued only with ``resume`` (its
    fingerprint, scene content + config + teacher + downscale, must match; ``config.steps`` may grow)
    or replaced only with ``overwrite``. Resuming a run already at ``config.steps`` returns its saved
    metrics; ``config.steps`` below the checkpoint's step is an error.
    """
    # a sharded run resumes as one (on any number of ranks, one included)
    sharded_run = resume and (pathlib.Path(out_dir) / "checkpoint_dist" / "manifest.json").is_file()
    if nproc > 1 or views_per_rank != 1 or in_torchrun_job() or sharded_run:
        from .distributed import train_field_sharded

        return None, train_field_sharded(scene_dir, config, out_dir, cache_dir, resume, progress, plain, downscale,
                                         overwrite, nproc, dist_timeout, views_per_rank=views_per_rank,
                                         **teacher_kwargs)
    out_dir, scene_dir = pathlib.Path(out_dir), resolve_scene_dir(scene_dir)  # a folder or a bundled scene's name
    teacher = None if plain else config.teacher
    fingerprint = field_fingerprint(scene_dir, config, teacher, downscale, teacher_kwargs)
    with field_run_directory(out_dir, scene_dir, fingerprint, teacher, downscale, resume, overwrite) as run:
        checkpoint = out_dir / "checkpoint.pt"
        done = _resumed_step(checkpoint, config.steps) if run.resumed and checkpoint.is_file() else None
        prepared = prepare_scene(scene_dir, teacher, cache_dir, progress, downscale, data=config.data, **teacher_kwargs)
        trainer = Trainer(prepared.train, config, out_dir, prepared.teacher_maps, prepared.test, name=prepared.name)
        trainer.fingerprint = fingerprint
        if done is not None:
            trainer.resume()
        metrics = finished_metrics(run, out_dir, done, config.steps)
        if metrics is not None:
            return trainer, metrics
        metrics = trainer.train(progress=progress)
        trainer.field.save(out_dir / "point_cloud.ply")
        write_json_atomic(out_dir / "metrics.json", {"teacher": teacher, **metrics})
        run.complete(step=trainer.step)
    return trainer, metrics


def field_fingerprint(scene_dir: pathlib.Path, config: TrainConfig, teacher: str | None, downscale: int,
                      teacher_kwargs: dict) -> dict:
    """What identifies a field run's inputs (``distillcore.runs``): scene content, config, teacher, downscale."""
    return run_fingerprint(scene=scene_dir, config=config.to_dict(), teacher=teacher, downscale=downscale,
                           teacher_options={k: str(v) for k, v in teacher_kwargs.items()})


def field_run_directory(out_dir: pathlib.Path, scene_dir: pathlib.Path, fingerprint: dict, teacher: str | None,
                        downscale: int, resume: bool, overwrite: bool,
                        marker: str = "checkpoint.pt") -> RunDirectory:
    """The :class:`RunDirectory` guarding a field run's ``out_dir`` (``marker``: its checkpoint file)."""
    return RunDirectory(out_dir, fingerprint=fingerprint, resume=resume, overwrite=overwrite,
                        markers=(marker,), outputs=("point_cloud.ply", "point_cloud.decoder.pt", "metrics.json"),
                        resume_ignore=("config.steps",),
                        info={"scene": str(pathlib.Path(scene_dir).resolve()), "teacher": teacher,
                              "downscale": downscale})


def _resumed_step(checkpoint: pathlib.Path, steps: int) -> int:
    """The step of the checkpoint a resumed run continues; an error when ``steps`` is below it
    (told before the scene and teacher maps are loaded)."""
    step = int(load_field_checkpoint(checkpoint)["step"])
    if steps < step:
        raise RunError(f"{checkpoint} is already at step {step}, beyond --steps {steps}: give --steps above {step} "
                       "to train further, or --overwrite to start again")
    return step
