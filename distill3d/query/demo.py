"""Feature 3DGS demo: distill EfficientNet-Lite0 features into a Gaussian field of the default scene,
render RGB + feature PCA and an orbit GIF, segment by query, and extract one object by its feature.

Runs at demo size (64 x 64 renders, 600 steps) in well under two minutes on
a 2-core CPU; ``benchmarks/feature3dgs.py`` is the full measurement.
"""
from __future__ import annotations

import pathlib

import imageio.v3 as iio
import torch

from distill3d.data import default_scene_dir
from distill3d.teachers import fit_pca

from distill3d.fields.camera_path import orbit_path
from distill3d.fields.config import TrainConfig
from distill3d.fields.pipeline import prepare_scene
from distill3d.fields.render_cli import render_frames, write_video
from distill3d.fields.trainer import Trainer

from . import extract, segmentation_miou, select_gaussians

DEMO_STEPS = 600
DEMO_POINTS = 5000
DEMO_DOWNSCALE = 2
DEMO_ORBIT_FRAMES = 12
EDIT_THRESHOLD = 0.8
EDIT_OBJECT_ID = 2  # the duck in the default scene


def demo(out_dir: pathlib.Path) -> dict:
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prepared = prepare_scene(default_scene_dir(), "efficientnet-lite0", out_dir / "feature_cache", progress=False,
                             downscale=DEMO_DOWNSCALE)
    train, test, maps = prepared.train, prepared.test, prepared.teacher_maps
    config = TrainConfig(steps=DEMO_STEPS, sh_degree=1, sh_degree_interval=DEMO_STEPS // 2, eval_every=0,
                         checkpoint_every=0)
    config.init.num_points = DEMO_POINTS
    config.densify.refine_start_iter, config.densify.refine_every = DEMO_STEPS // 6, DEMO_STEPS // 12
    trainer = Trainer(train, config, out_dir / "run", maps, test, name=prepared.name)
    metrics = trainer.train(progress=False)
    field = trainer.field
    field.save(out_dir / "point_cloud.ply")

    # RGB | PCA of rendered features | PCA of the teacher's map, for the first held-out view
    with torch.no_grad():
        view = trainer.render_view(test, 0)
    projection = fit_pca(view.features[0])
    teacher_map = torch.nn.functional.interpolate(maps[test.names[0]][None], (test.height, test.width),
                                                  mode="nearest")[0]
    panel = torch.cat([view.rgb[0].clamp(0, 1), projection(view.features[0]) * view.alpha[0],
                       fit_pca(teacher_map)(teacher_map)], dim=2)
    iio.imwrite(out_dir / "heldout_rgb_features_teacher.png",
                (panel.permute(1, 2, 0).numpy() * 255 + 0.5).astype("uint8"))
    frames = render_frames(field, orbit_path(train, DEMO_ORBIT_FRAMES), train.Ks[0], train.width, train.height,
                           "both", train.background)
    write_video(out_dir / "orbit.gif", frames, fps=6)

    # segmentation mIoU: teacher's own held-out maps vs the field's rendered maps (same protocol)
    num_classes = int(max(train.masks.max(), test.masks.max())) + 1
    reference = list(range(0, train.num_views, 4))
    ref_masks, test_masks = [train.masks[i] for i in reference], list(test.masks)
    with torch.no_grad():
        rendered_ref = [trainer.render_view(train, i).features[0] for i in reference]
        rendered_test = [trainer.render_view(test, i).features[0] for i in range(test.num_views)]
    miou_teacher = segmentation_miou([maps[train.names[i]] for i in reference], ref_masks,
                                     [maps[n] for n in test.names], test_masks, num_classes)
    miou_field = segmentation_miou(rendered_ref, ref_masks, rendered_test, test_masks, num_classes)

    # edit: the query is the mean rendered feature over the duck's pixels in the held-out view that
    # shows most of it; the Gaussians whose feature matches are extracted into their own PLY
    best = int((test.masks == EDIT_OBJECT_ID).flatten(1).sum(1).argmax())
    duck = test.masks[best] == EDIT_OBJECT_ID
    query = rendered_test[best][:, duck].mean(dim=1)
    selected = select_gaussians(field.gaussian_features().detach(), query, EDIT_THRESHOLD)
    if bool(selected.any()):
        extract(field, selected).save(out_dir / "extracted_duck.ply")

    return {
        "heldout_psnr": metrics["psnr"], "heldout_ssim": metrics["ssim"],
        "feature_cosine": metrics["feature_cosine"], "miou_teacher": miou_teacher, "miou_field": miou_field,
        "num_gaussians": metrics["num_gaussians"], "train_seconds": metrics["train_seconds"],
        "extracted_gaussians": int(selected.sum()), "steps": DEMO_STEPS,
    }
