"""`distill3d view RUN_OR_PLY`: a browser viewer for a trained field or PRD run (viser, extra ``[viewer]``);
`distill3d points view SCAN_OR_DIR --checkpoint CKPT`: a LiDAR scan with ground-truth and predicted boxes.

Both serve until Ctrl-C. A port in use, a corrupt file or a missing extra is one error line, exit code 2.
"""
from __future__ import annotations

import dataclasses
import pathlib
import time

from distillcore.config_cli import (add_config_arguments, add_config_file_arguments, add_run_options,
                                    apply_run_options, config_from_args)

from .config import ViewerConfig


def _serve_forever(close) -> int:
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopping")
    finally:
        close()
    return 0


def cmd_view(args) -> int:
    from .server import ViewerServer
    from .session import SessionConfig, ViewerSession

    from .ports import check_port_free

    apply_run_options(args)
    cfg = config_from_args(ViewerConfig, args)
    check_port_free(cfg.host, cfg.port)  # before minutes of loading: a taken port is told at once
    session = ViewerSession.open(args.path, args.scene, cfg.background,
                                 SessionConfig(backend=cfg.backend, device=cfg.device, threshold=cfg.threshold))
    server = ViewerServer(session, cfg)
    for note in session.notes:
        print(f"note: {note}")
    print(f"viewer: {server.url}  (modes: {', '.join(session.modes)}; Ctrl-C stops)", flush=True)
    return _serve_forever(server.close)


def add_parser(subparsers, name: str, help: str) -> None:
    p = subparsers.add_parser(name, help=help, description=__doc__.split("\n")[0])
    p.add_argument("path", type=pathlib.Path, metavar="RUN_OR_PLY",
                   help="run folder (distill3d train / inverse train), a 3DGS PLY, or a field / PRD checkpoint")
    p.add_argument("--scene", default=None,
                   help="scene folder or bundled name (training views, masks, second environment; default: the run's)")
    add_config_file_arguments(p)
    add_config_arguments(p, ViewerConfig, group_title="viewer (ViewerConfig)")
    add_run_options(p)
    p.set_defaults(func=cmd_view)


# ---- points ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class PointsViewCommand:
    """`distill3d points view` options."""
    checkpoint: pathlib.Path | None = None  # the detector (student) to show predictions of (required)
    teacher: pathlib.Path | None = None  # a second detector shown beside it (the teacher)
    frame: int = 0  # scan index in the data set (for a folder)
    split: str | None = None  # ImageSets/<split>.txt to index (default: every scan)
    score_threshold: float = 0.3  # predictions below this score are not drawn
    allow_missing_calib: bool = False  # read frames without calib / label files (simulator calibration, no labels)
    host: str = "127.0.0.1"  # interface to listen on
    port: int = 8080  # TCP port (in use: an error)

    def validate(self) -> None:
        from distillcore.checks import check_range

        if self.checkpoint is None:
            raise ValueError("--checkpoint is required: the detector whose boxes to show")
        check_range(self.frame, "frame", 0, integer=True)
        check_range(self.score_threshold, "score_threshold", 0, 1)
        check_range(self.port, "port", 0, 65535, integer=True)


def cmd_points_view(args) -> int:
    from distillcore.extras import require_extra

    from distill3d.points.train import load_checkpoint

    from .points import load_scan, points_panels, predicted_boxes, show_panels
    from .ports import check_port_free

    apply_run_options(args)
    cfg = config_from_args(PointsViewCommand, args)
    cfg.validate()
    models = {"student": load_checkpoint(cfg.checkpoint)}
    if cfg.teacher is not None:
        models["teacher"] = load_checkpoint(cfg.teacher)
    classes = {name: tuple(state["meta"].get("class_names", ())) for name, (_, state) in models.items()}
    if len(set(classes.values())) > 1:
        raise ValueError(f"the detectors were trained on different classes: {classes}")
    scan = load_scan(args.scan, classes["student"], cfg.frame, cfg.split, cfg.allow_missing_calib)
    panels = points_panels(scan, {name: predicted_boxes(model, scan, cfg.score_threshold)
                                  for name, (model, _) in models.items()})
    viser = require_extra("viser", "viewer")
    check_port_free(cfg.host, cfg.port)
    server = viser.ViserServer(host=cfg.host, port=cfg.port, verbose=False)
    server.scene.set_up_direction("+z")  # the LiDAR frame is z-up
    show_panels(server, panels)
    counts = ", ".join(f"{p.name}: {len(p.pred_segments) // 12} predicted" for p in panels)
    print(f"scan {scan.frame_id}: {len(scan.points)} points, {len(scan.boxes)} ground-truth boxes; {counts}")
    print(f"viewer: http://{cfg.host}:{server.get_port()}  (Ctrl-C stops)", flush=True)
    return _serve_forever(server.stop)


def add_points_view_parser(sub) -> None:
    """Registers `view` under `distill3d points` (called by ``distill3d.points.cli``)."""
    p = sub.add_parser("view", help="show a LiDAR scan with ground-truth and predicted boxes in the browser")
    p.add_argument("scan", type=pathlib.Path, metavar="SCAN_OR_DIR",
                   help="KITTI-layout folder, or one <root>/training/velodyne/<id>.bin scan in such a folder")
    add_config_file_arguments(p)
    add_config_arguments(p, PointsViewCommand, group_title="points view (PointsViewCommand)")
    add_run_options(p)
    p.set_defaults(func=cmd_points_view)


__all__ = ["ViewerConfig", "PointsViewCommand", "add_parser", "add_points_view_parser", "cmd_view", "cmd_points_view"]
