"""`distill3d query`: segment a trained field's rendered features by a query, score mIoU against a
scene's object masks, and edit the field (delete / extract / recolor the Gaussians matching a query)."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import torch


def _load(args):
    from distill3d.data import load_scene
    from distill3d.fields.field import FeatureField

    return FeatureField.load(args.field), load_scene(args.scene, args.split)


def _view_index(scene, view: str) -> int:
    if view in scene.names:
        return scene.names.index(view)
    if view.isdigit() and int(view) < scene.num_views:
        return int(view)
    raise ValueError(f"view {view!r} is neither a name nor an index of the {scene.num_views} views")


@torch.no_grad()
def _rendered_features(field, scene, index: int, backend: str) -> torch.Tensor:
    out = field.render(scene.viewmats[index:index + 1], scene.Ks[index:index + 1], scene.width, scene.height,
                       background=scene.background, backend=backend)
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
    return point_query(features, *args.point) if args.point is not None else box_query(features, tuple(args.box))


def cmd_segment(args) -> int:
    import imageio.v3 as iio

    from . import threshold_mask

    field, scene = _load(args)
    query = query_vector(args, field, scene)
    index = _view_index(scene, args.view)
    mask = threshold_mask(_rendered_features(field, scene, index, args.backend), query, args.threshold)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(args.out, mask.numpy().astype(np.uint8) * 255)
    print(f"{int(mask.sum())} of {mask.numel()} pixels selected -> {args.out}")
    return 0


def cmd_miou(args) -> int:
    from distill3d.data import load_scene

    from . import segmentation_miou

    field, test = _load(args)
    train = load_scene(args.scene, "train")
    if train.masks is None or test.masks is None:
        raise ValueError(f"{args.scene} has no object masks to score against")
    num_classes = int(max(train.masks.max(), test.masks.max())) + 1
    reference = list(range(0, train.num_views, args.reference_stride))
    miou = segmentation_miou(
        [_rendered_features(field, train, i, args.backend) for i in reference], [train.masks[i] for i in reference],
        [_rendered_features(field, test, i, args.backend) for i in range(test.num_views)],
        [test.masks[i] for i in range(test.num_views)], num_classes)
    print(json.dumps({"miou": miou, "views": test.num_views, "classes": num_classes}))
    return 0


def cmd_edit(args) -> int:
    from . import delete, extract, recolor, select_gaussians

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


def add_parser(subparsers, name: str, help: str) -> None:
    parser = subparsers.add_parser(name, help=help, description=help)
    sub = parser.add_subparsers(dest="query_command", metavar="ACTION", required=True)

    def common(p, with_query: bool):
        p.add_argument("field", type=pathlib.Path, help="trained field (point_cloud.ply from `distill3d train`)")
        p.add_argument("--scene", required=True, help="scene folder with the cameras (and masks)")
        p.add_argument("--split", default="test", help="split whose views are used (default test)")
        p.add_argument("--backend", default="auto", choices=["auto", "native", "torch", "gsplat"],
                       help="rasterizer backend")
        if with_query:
            p.add_argument("--view", default="0", help="view (name or index) the point/box refers to")
            p.add_argument("--point", type=int, nargs=2, metavar=("X", "Y"), help="query: feature at this pixel")
            p.add_argument("--box", type=int, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                           help="query: mean feature in this box (pixels, end exclusive)")
            p.add_argument("--text", default=None, help="query: text through a CLIP-style teacher")
            p.add_argument("--teacher", default="clip", help="teacher for --text (must be the field's teacher)")
            p.add_argument("--teacher-checkpoint", default=None, help="that teacher's weights")
            p.add_argument("--threshold", type=float, default=0.8, help="cosine similarity threshold in [-1, 1]")

    p = sub.add_parser("segment", help="binary mask of the pixels of --view matching the query")
    common(p, True)
    p.add_argument("--out", type=pathlib.Path, required=True, help="output mask PNG")
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("miou", help="nearest-prototype segmentation mIoU against the scene's object masks")
    common(p, False)
    p.add_argument("--reference-stride", type=int, default=4,
                   help="every N-th training view gives the mask-mean prototypes")
    p.set_defaults(func=cmd_miou)

    p = sub.add_parser("edit", help="delete / extract / recolor the Gaussians whose feature matches the query")
    common(p, True)
    p.add_argument("--action", choices=["delete", "extract", "recolor"], required=True, help="what to do")
    p.add_argument("--color", type=float, nargs=3, default=(1.0, 0.0, 0.0), metavar=("R", "G", "B"),
                   help="new colour for recolor, values in [0, 1]")
    p.add_argument("--out", type=pathlib.Path, required=True, help="output PLY of the edited field")
    p.set_defaults(func=cmd_edit)
