"""Viewer speed: frames per second the server can serve, and the latency from a camera move to a new frame.

The field: ``--field`` (a run folder, PLY or checkpoint), or by default the default scene's field as
the trainer initialises it (``FeatureField.from_points`` on the points unprojected from the scene's
depth maps, ``--points`` Gaussians, ``--feature-dim`` feature channels): rendering cost depends on the
Gaussians' count, size and the rendered width, not on whether they were trained, and training one here
takes many minutes on a shared 2-core machine.

1. **Served frames per second** at 256^2 and 512^2 (``--sizes``): one frame is what the server does for
   a browser, ``ViewerSession.render`` (our rasterizer, ``--backend``, default native on CPU) plus the
   JPEG encoding viser sends (``set_background_image``'s encoder, quality 90); ``fps = 1 / median(time)``
   over ``--repeats`` frames of a training view, per render mode (RGB; feature PCA with the selection overlay).
2. **Latency from a camera move to a new frame**, in a real browser when Chromium and playwright are
   installed: an orbit drag on the canvas (playwright's mouse), the browser reports the camera, the stream
   renders and sends. Reported: the time from the drag's start to the first (preview) frame and to the
   full frame once the camera is still (this includes ``still_seconds``), median over ``--moves`` drags,
   and the stream's own request-to-sent time (camera message received -> frame handed to the websocket).

The machine is shared: the load average at the start and end is recorded; numbers on a loaded machine
are slower than on an idle one, sometimes several times.

Usage::

    python benchmarks/viewer.py                       # writes benchmarks/results/viewer.json
    python benchmarks/viewer.py --field outputs/default/efficientnet-lite0 --sizes 256 512 1024
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

from distillcore.config_cli import preload_environment

preload_environment()  # before torch loads (as `distill3d view` does: large frames on huge pages)

import torch  # noqa: E402

from distillcore.serialization import write_json_atomic  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "viewer.json"


def default_field(num_points: int, feature_dim: int):
    from distill3d.data import PointInitConfig, default_scene_dir, initial_points, load_scene
    from distill3d.fields.field import FeatureField
    from distill3d.gaussians import GaussianInitConfig

    scene = load_scene(default_scene_dir(), "train")
    points, colors = initial_points(scene, PointInitConfig("depth", num_points))
    field = FeatureField.from_points(points, colors, 1, feature_dim, GaussianInitConfig(init_opacity=0.5))
    with torch.no_grad():  # distinct, non-zero features so the PCA and the selection have something to show
        field.gaussians.params["features"].copy_(torch.randn(len(points), feature_dim, generator=torch.Generator().manual_seed(0)))
    return field, scene


def served_fps(session, camera, mode: str, repeats: int) -> dict:
    from viser._scene_api import _encode_image_binary

    session.render(camera, mode)  # warm-up (kernel load, PCA fit)
    renders, encodes = [], []
    for _ in range(repeats):
        frame = session.render(camera, mode)
        start = time.perf_counter()
        _encode_image_binary(frame.image, "jpeg", jpeg_quality=90)
        encodes.append(time.perf_counter() - start)
        renders.append(frame.seconds)
    # the rasterizer alone on the same camera (RGB of the same Gaussians), in the same run: the ratio shows
    # what the viewer adds (PCA, overlay, uint8) apart from the machine's load
    from distill3d.render import rasterize

    g = session.gaussians
    raw = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            rasterize(g.means, g.quats, g.activated_scales, g.activated_opacities, g.sh_coeffs, camera.viewmat[None],
                      camera.K[None], camera.width, camera.height, sh_degree=g.sh_degree, backend=session.backend)
            raw.append(time.perf_counter() - start)
    total = statistics.median(r + e for r, e in zip(renders, encodes))
    return {"mode": mode, "width": camera.width, "height": camera.height, "render_ms": 1000 * statistics.median(renders),
            "encode_ms": 1000 * statistics.median(encodes), "rasterize_rgb_ms": 1000 * statistics.median(raw),
            "fps": 1.0 / total}


def browser_latency(session, moves: int, max_resolution: int) -> dict | None:
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if chromium is None:
        return None
    from distill3d.viewer.config import ViewerConfig
    from distill3d.viewer.ports import free_port
    from distill3d.viewer.server import ViewerServer

    server = ViewerServer(session, ViewerConfig(port=free_port(), max_resolution=max_resolution))
    to_preview, to_full, stream_ms, sizes = [], [], [], set()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 900, "height": 600})
            page.goto(server.url)
            stream = server.wait_for_client(120)
            last = stream.wait_for_frame(0, full=True, timeout=120)
            canvas = page.locator("canvas").first.bounding_box()
            cx, cy = canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2
            for i in range(moves):
                time.sleep(1.0)  # the stream is idle: the move starts from rest
                before = stream.count
                # an orbit drag in the browser, as a user moves the camera
                page.mouse.move(cx, cy)
                page.mouse.down()
                moved = time.perf_counter()
                for step in range(1, 6):
                    page.mouse.move(cx + 8 * step * (-1) ** i, cy)
                page.mouse.up()
                preview = stream.wait_for_frame(before, full=False, timeout=120)
                last = stream.wait_for_frame(preview.number if not preview.full else before, full=True, timeout=120)
                to_preview.append(preview.sent_at - moved)
                to_full.append(last.sent_at - moved)
                stream_ms.append(1000 * (preview.sent_at - preview.requested_at))
                sizes.add((last.frame.camera.width, last.frame.camera.height))
            browser.close()
    finally:
        server.close()
    return {"moves": moves, "max_resolution": max_resolution, "full_frame_sizes": sorted(sizes),
            "move_to_first_frame_ms": 1000 * statistics.median(to_preview),
            "move_to_full_frame_ms": 1000 * statistics.median(to_full),
            "camera_message_to_sent_ms": statistics.median(stream_ms),
            "move_to_first_frame_ms_all": [round(1000 * t, 1) for t in to_preview]}


def main(argv: list[str] | None = None) -> None:
    from distill3d.viewer.session import SessionConfig, ViewerSession
    from distill3d.viewer.source import ViewerSource, load_source

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--field", type=Path, help="run folder, PLY or checkpoint (default: the default scene's initial field)")
    parser.add_argument("--points", type=int, default=20_000, help="Gaussians of the default field (the trainer's default init)")
    parser.add_argument("--feature-dim", type=int, default=16, help="feature channels of the default field")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="square frame sides")
    parser.add_argument("--repeats", type=int, default=5, help="timed frames per measurement (median)")
    parser.add_argument("--moves", type=int, default=5, help="camera moves for the latency (0: skip)")
    parser.add_argument("--backend", default="native", help="rasterizer backend")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    config = SessionConfig(backend=args.backend, device=args.device)
    if args.field is not None:
        session = ViewerSession(load_source(args.field), config)
        field_info = {"path": str(args.field)}
    else:
        field, scene = default_field(args.points, args.feature_dim)
        session = ViewerSession(ViewerSource(field.gaussians, field, None, scene, None, torch.zeros(3), Path("default"), []),
                                config)
        field_info = {"path": None, "kind": "default scene, trainer initialisation (untrained)", "points": args.points}
    field_info.update(num_gaussians=len(session.gaussians),
                      feature_dim=None if session.field is None else session.field.feature_dim)
    base = session.training_cameras()[0] if session.training_cameras() else None
    if base is None:
        raise SystemExit("the field has no scene to take a camera from: pass a run with a scene")
    rows = []
    for size in args.sizes:
        camera = base.scaled(size, size)
        rows.append(served_fps(session, camera, "rgb", args.repeats))
        if session.field is not None:
            session.click_segment(camera, size // 2, size // 2, 0.5)  # the overlay costs a feature pass
            rows.append(served_fps(session, camera, "feature_pca", args.repeats))
            session.clear_selection()
        for row in rows[-2:]:
            print(f"{row['mode']:12s} {row['width']:4d}^2  render {row['render_ms']:8.1f} ms  "
                  f"encode {row['encode_ms']:6.1f} ms  {row['fps']:6.2f} frames/s  (rasterize RGB alone {row['rasterize_rgb_ms']:.1f} ms)")
    latency = browser_latency(session, args.moves, 256) if args.moves else None
    if latency is None:
        print("latency: skipped (needs chromium and playwright)")
    else:
        print(f"latency move -> first frame {latency['move_to_first_frame_ms']:.0f} ms, -> full frame "
              f"{latency['move_to_full_frame_ms']:.0f} ms (camera message -> sent {latency['camera_message_to_sent_ms']:.0f} ms)")
    result = {"field": field_info, "backend": session.backend, "device": args.device, "repeats": args.repeats,
              "served": rows, "latency": latency,
              "machine": {"platform": platform.platform(), "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                          "load_average_before": load_before, "load_average_after": os.getloadavg(),
                          "torch": torch.__version__,
                          "thp_mem_alloc_enable": os.environ.get("THP_MEM_ALLOC_ENABLE", "unset")}}
    write_json_atomic(args.out, result)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
