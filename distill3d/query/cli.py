"""`distill3d query`: segment a trained field's rendered features by a query, score mIoU against a
scene's object masks, edit the field (delete / extract / recolor the Gaussians matching a query) and
compress its features for a faster render."""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Literal

import numpy as np
import torch

from distillcore.checks import check_range
from distillcore.config_cli import (add_config_arguments, add_config_file_arguments, add_run_options,
                                    apply_run_options, config_from_args)
from distillcore.serialization import to_json


@dataclasses.dataclass
class ViewOptions:
    """Which views of the scene every query command renders."""
    split: str = "test"  # split whose views are used
    backend: Literal["auto", "native", "torch", "gsplat"] = "auto"  # rasterizer backend
    downsample: int = 1  # render at 1/F of the scene's resolution

    def validate(self) -> None:
        if self.downsample < 1:
            raise ValueError(f"--downsample must be >= 1, got {self.downsample}")


@dataclasses.dataclass
class QueryOptions(ViewOptions):
    """`distill3d query segment` options: one of --point, --box or --text is the query."""
    view: str = "0"  # view (name or index) the point/box refers to
    point: tuple[int, int] | None = None  # query: feature at this pixel (X Y)
    box: tuple[int, int, int, int] | None = None  # query: mean feature in this box (X0 Y0 X1 Y1, end exclusive)
    text: str | None = None  # query: text through a CLIP-style teacher
    teacher: str = "clip"  # teacher for --text (must be the field's teacher)
    teacher_checkpoint: str | None = None  # that teacher's weights
    threshold: float = 0.8  # cosine similarity threshold in [-1, 1]


@dataclasses.dataclass
class MiouOptions(ViewOptions):
    """`distill3d query miou` options."""
    reference_stride: int = 4  # every N-th training view gives the mask-mean prototypes

    def validate(self) -> None:
        super().validate()
        if self.reference_stride < 1:
            raise ValueError(f"--reference-stride must be >= 1, got {self.reference_stride}")


@dataclasses.dataclass
class EditOptions(QueryOptions):
    """`distill3d query edit` options."""
    color: tuple[float, float, float] = (1.0, 0.0, 0.0)  # new colour for recolor, values in [0, 1]


@dataclasses.dataclass
class CompressOptions:
    """`distill3d query compress` options: the field's features compressed into the teacher's top-k PCA of
    the scene's training views (``FeatureField.compressed``), rendered as D_low channels plus a 1x1 decode."""
    low_dim: int = 16  # rendered feature channels after compression (D_low)
    teacher: str = "efficientnet-lite0"  # the teacher the field was trained with (its maps give the PCA)
    cache: pathlib.Path | None = None  # teacher feature cache folder (None: ~/.cache/distillkit/features)

    def validate(self) -> None:
        if self.low_dim < 1:
            raise ValueError(f"--low-dim must be >= 1, got {self.low_dim}")


def _scene(args, split: str):
    from distill3d.data import load_scene

    return load_scene(args.scene, split).downsample(getattr(args, "downsample", 1))


def _load(args):
    from distill3d.fields.field import FeatureField

    field = FeatureField.load(args.field)
    if not field.gaussians.has_trained_features:
        raise ValueError(f"{args.field} carries no trained features (all zero: a plain 3DGS field?); "
                         "queries need a field trained with a teacher")
    if hasattr(args, "threshold"):  # fail before rendering anything
        check_range(args.threshold, "--threshold (a cosine similarity)", -1, 1)
    return field, _scene(args, args.split)


def _view_index(scene, view: str) -> int:
    if view in scene.names:
        return scene.names.index(view)
    if view.isdigit() and int(view) < scene.num_views:
        return int(view)
    raise ValueError(f"view {view!r} is neither a name nor an index of the {scene.num_views} views")


@torch.no_grad()
def _rendered_features(field, scene, index: int, backend: str) -> torch.Tensor:
    """The rendered map ``[F, H, W]``: ``D_low`` channels for a decoder field, scored with ``field.decoder``
    without decoding (``distill3d.query.segment``)."""
    out = field.render(scene.viewmats[index:index + 1], scene.Ks[index:index + 1], scene.width, scene.height,
                       background=scene.background, decode=False, backend=backend)
    return out.features[0]


def query_vector(args, field, scene) -> torch.Tensor:
    """The query ``[D]`` from --point / --box (on the rendered features of --view) or --text."""
    from . import box_query, point_query, text_query

    given = [args.point is not None, args.box is not None, args.text is not None]
    if sum(given) != 1:
        raise ValueError("give exactly one query: --point X Y, --box X0 Y0 X1 Y1, or --text PROMPT")
    if args.text is not None:
        from distill3d.teachers import build_teacher

        teacher = build_teacher(args.teacher, checkpoint=args.teacher_checkpoint)
        query = text_query(teacher, [args.text])[0]
        if query.shape[0] != field.teacher_dim:
            raise ValueError(f"text embedding has {query.shape[0]} dims but the field carries {field.teacher_dim}: "
                             "train the field with the same CLIP-style teacher")
        return query
    features = _rendered_features(field, scene, _view_index(scene, args.view), args.backend)
    query = point_query(features, *args.point) if args.point is not None else box_query(features, tuple(args.box))
    return field.decoder.decode_rows(query[None])[0] if field.decoder is not None else query


def cmd_segment(args) -> int:
    import imageio.v3 as iio

    from . import threshold_mask

    field, scene = _load(args)
    query = query_vector(args, field, scene)
    index = _view_index(scene, args.view)
    mask = threshold_mask(_rendered_features(field, scene, index, args.backend), query, args.threshold, field.decoder)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(args.out, mask.numpy().astype(np.uint8) * 255)
    print(f"{int(mask.sum())} of {mask.numel()} pixels selected -> {args.out}")
    return 0


def cmd_miou(args) -> int:
    from . import segmentation_miou

    field, test = _load(args)
    train = _scene(args, "train")
    if train.masks is None or test.masks is None:
        raise ValueError(f"{args.scene} has no object masks to score against")
    num_classes = int(max(train.masks.max(), test.masks.max())) + 1
    reference = list(range(0, train.num_views, args.reference_stride))
    miou = segmentation_miou(
        [_rendered_features(field, train, i, args.backend) for i in reference], [train.masks[i] for i in reference],
        [_rendered_features(field, test, i, args.backend) for i in range(test.num_views)],
        [test.masks[i] for i in range(test.num_views)], num_classes, field.decoder)
    print(to_json({"miou": miou, "views": test.num_views, "classes": num_classes}, indent=None))
    return 0


def _check_output_is_not_the_field(args) -> None:
    """The written PLY and its decoder sidecar must not replace the field they are made from."""
    from distillcore.runs import check_output_is_not_input

    check_output_is_not_input(args.out, args.field, "--out")
    check_output_is_not_input(args.out.with_suffix(".decoder.pt"), args.field.with_suffix(".decoder.pt"), "--out")


def cmd_edit(args) -> int:
    from . import delete, extract, recolor, select_gaussians

    _check_output_is_not_the_field(args)
    field, scene = _load(args)
    query = query_vector(args, field, scene)
    selected = select_gaussians(field.gaussian_features().detach(), query, args.threshold)
    if args.action == "delete":
        edited = delete(field, selected)
    elif args.action == "extract":
        edited = extract(field, selected)
    else:
        edited = recolor(field, selected, tuple(args.color))
    edited.save(args.out)
    print(f"{args.action}: {int(selected.sum())} of {field.num_gaussians} Gaussians matched -> {args.out}")
    return 0


def cmd_compress(args) -> int:
    from distill3d.data import resolve_scene_dir
    from distill3d.fields.decoder import teacher_pca
    from distill3d.fields.field import FeatureField
    from distill3d.fields.pipeline import read_splits
    from distill3d.teachers import build_teacher, scene_features
    from distill3d.teachers.cache import DEFAULT_CACHE

    _check_output_is_not_the_field(args)
    field = FeatureField.load(args.field)
    if not args.low_dim <= field.teacher_dim:
        raise ValueError(f"--low-dim must be at most the field's teacher width {field.teacher_dim}, got {args.low_dim}")
    teacher = build_teacher(args.teacher)
    if teacher.dim != field.teacher_dim:  # before any image goes through it
        raise ValueError(f"teacher {args.teacher} gives {teacher.dim}-d maps but {args.field} carries "
                         f"{field.teacher_dim}-d features: pass the teacher the field was trained with")
    scene_dir = resolve_scene_dir(args.scene)
    train = read_splits(scene_dir).train  # the training views, as `distill3d train` fed them to the teacher
    maps = scene_features([train], scene_dir.name, teacher, args.cache or DEFAULT_CACHE)
    compressed = field.compressed(*teacher_pca([maps[name] for name in train.names], args.low_dim))
    compressed.save(args.out)
    print(f"compressed {field.feature_dim} -> {args.low_dim} rendered channels "
          f"({field.num_gaussians} Gaussians) -> {args.out} + {args.out.with_suffix('.decoder.pt').name}")
    return 0


def _resolved(options_cls, command):
    """``command`` run on ``args`` completed with the resolved ``options_cls`` (defaults < --config < flags)."""
    def run(args) -> int:
        apply_run_options(args)
        options = config_from_args(options_cls, args)
        for f in dataclasses.fields(options):
            setattr(args, f.name, getattr(options, f.name))
        return command(args)
    return run


def add_parser(subparsers, name: str, help: str) -> None:
    parser = subparsers.add_parser(name, help=help, description=help)
    sub = parser.add_subparsers(dest="query_command", metavar="ACTION", required=True)

    def common(p, options_cls):
        p.add_argument("field", type=pathlib.Path, help="trained field (point_cloud.ply from `distill3d train`)")
        p.add_argument("--scene", required=True, help="scene folder with the cameras (and masks)")
        add_config_file_arguments(p)
        add_config_arguments(p, options_cls, group_title=f"options ({options_cls.__name__})")
        add_run_options(p)

    p = sub.add_parser("segment", help="binary mask of the pixels of --view matching the query")
    common(p, QueryOptions)
    p.add_argument("--out", type=pathlib.Path, required=True, help="output mask PNG")
    p.set_defaults(func=_resolved(QueryOptions, cmd_segment))

    p = sub.add_parser("miou", help="nearest-prototype segmentation mIoU against the scene's object masks")
    common(p, MiouOptions)
    p.set_defaults(func=_resolved(MiouOptions, cmd_miou))

    p = sub.add_parser("edit", help="delete / extract / recolor the Gaussians whose feature matches the query")
    common(p, EditOptions)
    p.add_argument("--action", choices=["delete", "extract", "recolor"], required=True, help="what to do")
    p.add_argument("--out", type=pathlib.Path, required=True, help="output PLY of the edited field")
    p.set_defaults(func=_resolved(EditOptions, cmd_edit))

    p = sub.add_parser("compress", help="compress the field's features to D_low channels (teacher PCA + 1x1 "
                                        "decoder) for a faster feature render")
    common(p, CompressOptions)
    p.add_argument("--out", type=pathlib.Path, required=True, help="output PLY of the compressed field")
    p.set_defaults(func=_resolved(CompressOptions, cmd_compress))
