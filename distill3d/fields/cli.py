"""`distill3d train SCENE --teacher NAME`: train a Feature 3DGS field (or plain 3DGS with --plain)."""
from __future__ import annotations

import json
import pathlib

from .config import TrainConfig
from .pipeline import DEFAULT_CACHE


def config_from_args(args) -> TrainConfig:
    cfg = TrainConfig(teacher=args.teacher, steps=args.steps, sh_degree=args.sh_degree,
                      sh_degree_interval=args.sh_degree_interval, backend=args.backend, eval_every=args.eval_every,
                      checkpoint_every=args.checkpoint_every, seed=args.seed, device=args.device)
    cfg.loss.lambda_dssim = args.lambda_dssim
    cfg.loss.feature_weight = 0.0 if args.plain else args.feature_weight
    cfg.loss.feature_grad_to_geometry = args.feature_grad_to_geometry
    cfg.decoder.enabled = args.decoder_dim is not None
    if args.decoder_dim is not None:
        cfg.decoder.low_dim = args.decoder_dim
    cfg.densify.enabled = not args.no_densify
    cfg.init.method, cfg.init.num_points = args.init, args.points
    return cfg


def cmd_train(args) -> int:
    from .pipeline import train_field

    config = config_from_args(args)
    out = args.out or pathlib.Path("outputs") / pathlib.Path(args.scene).name / ("plain" if args.plain else args.teacher)
    kwargs = {"checkpoint": args.teacher_checkpoint} if args.teacher_checkpoint else {}
    trainer, metrics = train_field(args.scene, config, out, args.cache, resume=args.resume, plain=args.plain, **kwargs)
    print(json.dumps(metrics, indent=2))
    print(f"field: {out / 'point_cloud.ply'}  checkpoint: {trainer.checkpoint_path}")
    return 0


def add_parser(subparsers, name: str, help: str) -> None:
    p = subparsers.add_parser(name, help=help, description=help + ". Writes OUT/point_cloud.ply (3DGS columns + "
                              "feat_*), OUT/checkpoint.pt and OUT/metrics.json.")
    p.add_argument("scene", help="scene folder: Blender (transforms_*.json) or COLMAP (sparse/0)")
    p.add_argument("--teacher", default="efficientnet-lite0", help="2D teacher (see `distill3d teachers list`)")
    p.add_argument("--teacher-checkpoint", default=None, help="weights for teachers that need yours (sam, clip)")
    p.add_argument("--plain", action="store_true", help="plain 3DGS: no teacher, RGB loss only")
    p.add_argument("--out", type=pathlib.Path, default=None, help="output folder (default outputs/SCENE/TEACHER)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if it exists")
    p.add_argument("--steps", type=int, default=7000, help="training steps (one view per step)")
    p.add_argument("--feature-weight", type=float, default=1.0, help="weight of the feature L1 loss")
    p.add_argument("--lambda-dssim", type=float, default=0.2, help="D-SSIM weight lambda in the RGB loss")
    p.add_argument("--decoder-dim", type=int, default=None,
                   help="enable the speed-up decoder: render this many channels, 1x1 conv to the teacher's D")
    p.add_argument("--feature-grad-to-geometry", action="store_true",
                   help="let the feature loss move positions/shapes/opacities (off in Feature 3DGS)")
    p.add_argument("--sh-degree", type=int, default=3, help="maximum spherical-harmonics degree (0..3)")
    p.add_argument("--sh-degree-interval", type=int, default=1000, help="raise the SH degree every N steps")
    p.add_argument("--init", default="auto", choices=["auto", "sparse", "depth", "random"],
                   help="initial points: COLMAP points, unprojected depth, or random (auto: first available)")
    p.add_argument("--points", type=int, default=20000, help="initial points for depth/random initialisation")
    p.add_argument("--no-densify", action="store_true", help="disable gsplat DefaultStrategy densification")
    p.add_argument("--eval-every", type=int, default=1000, help="evaluate on the test split every N steps (0: never)")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="checkpoint every N steps (0: only at the end)")
    p.add_argument("--backend", default="auto", choices=["auto", "native", "torch", "gsplat"], help="rasterizer backend")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--cache", type=pathlib.Path, default=DEFAULT_CACHE, help="teacher feature cache folder")
    p.set_defaults(func=cmd_train)
