"""`ViewerServer`: a viser server that streams our rasterizer's frames of a :class:`ViewerSession`.

As nerfview does for gsplat: each browser's camera is read from viser (``client.camera.on_update``),
rendered server side and sent back as the scene's background image
(``client.scene.set_background_image``), small while the camera moves and full size once it stops
(``streaming.py``). Panel controls and canvas gestures call the session:

* click on the canvas: select by the feature at that pixel; shift + drag a box: select by the box's mean feature;
* threshold slider, clear; extract / delete / recolor the selection into a new PLY;
* render mode; snap to a training view; relight a PRD run (the scene's second environment or an upload);
* a frame-time readout (size, full or preview, milliseconds).

The server needs no display: everything runs in the Python process, the browser only shows images.
"""
from __future__ import annotations

import logging
import pathlib
import tempfile
import threading

import numpy as np

from distillcore.extras import require_extra

from .camera import ViewerCamera
from .config import ViewerConfig
from .modes import MODES
from .ports import PortInUseError, check_port_free
from .session import EDIT_ACTIONS, Frame, ViewerSession
from .streaming import FrameStream, StreamedFrame

log = logging.getLogger(f"distillkit.{__name__}")
ENVIRONMENT_SUFFIXES = (".hdr", ".exr", ".npz", ".npy")
_LABELS = {m.name: m.label for m in MODES}


def _world_up(cameras: list[ViewerCamera]) -> np.ndarray | None:
    """The mean "up" (-y of OpenCV cameras) of the training views, or None without views."""
    if not cameras:
        return None
    ups = np.stack([-cam.viewmat[1, :3].double().numpy() for cam in cameras])  # row 1 of R_w2c = camera y in world
    up = ups.mean(0)
    return up / max(np.linalg.norm(up), 1e-12)


class ViewerServer:
    """Serves ``session`` at ``http://host:port`` until :meth:`close`.

    Args:
        session: what to render (:class:`~distill3d.viewer.session.ViewerSession`).
        config: host, port, frame sizes, timing (:class:`~distill3d.viewer.config.ViewerConfig`).

    Raises:
        PortInUseError: the port is taken (checked before starting, and again after viser bound).
        MissingExtraError: viser is not installed (``pip install 'distillkit[viewer]'``).
    """

    def __init__(self, session: ViewerSession, config: ViewerConfig | None = None):
        viser = require_extra("viser", "viewer")
        self.session, self.config = session, config or ViewerConfig()
        check_port_free(self.config.host, self.config.port)
        self.server = viser.ViserServer(host=self.config.host, port=self.config.port, verbose=False)
        self.port = self.server.get_port()
        if self.config.port and self.port != self.config.port:  # taken between our check and viser's bind
            self.server.stop()
            raise PortInUseError(f"port {self.config.port} on {self.config.host} is in use: pick another with --port")
        self.mode = "rgb"
        self.streams: dict[int, FrameStream] = {}
        self.cameras = session.training_cameras()
        self.last_edit: pathlib.Path | None = None
        self._edits = 0
        self._uploads = tempfile.TemporaryDirectory(prefix="distill3d-view-")
        self._lock = threading.Lock()
        up = _world_up(self.cameras)
        if up is not None:
            self.server.scene.set_up_direction(tuple(float(v) for v in up))
            self._initial_view(up)
        self._build_panel()
        self._register_gestures()
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host
        return f"http://{host}:{self.port}"

    # ---- clients ------------------------------------------------------------------------------------
    def _initial_view(self, up: np.ndarray) -> None:
        """Every browser starts at training view 0 (viser's initial camera: set before any browser connects,
        so no later snap races with it), looking at the point of its optical axis nearest the Gaussians' centre."""
        wxyz, position, fov_y = self.cameras[0].pose()
        forward = self.cameras[0].viewmat[2, :3].double().numpy()  # row 2 of R_w2c = the optical axis in world
        centre = self.session.gaussians.means.detach().double().median(0).values.cpu().numpy()
        distance = max(float((centre - position) @ forward), 1e-3)
        initial = self.server.initial_camera
        initial.fov = float(fov_y)
        initial.up = tuple(float(v) for v in up)
        initial.position = tuple(float(v) for v in position)
        initial.look_at = tuple(float(v) for v in position + distance * forward)

    def _connect(self, client) -> None:
        stream = FrameStream(client, self._render, self.config, self._show_frame_time)
        with self._lock:
            self.streams[client.client_id] = stream

    def _disconnect(self, client) -> None:
        with self._lock:
            stream = self.streams.pop(client.client_id, None)
        if stream is not None:
            stream.stop()

    def _render(self, camera: ViewerCamera) -> Frame:
        return self.session.render(camera, self.mode)

    def refresh(self) -> None:
        """A full frame for every browser (after a change of mode, selection or model)."""
        with self._lock:
            streams = list(self.streams.values())
        for stream in streams:
            stream.refresh()

    def wait_for_client(self, timeout: float = 60.0) -> FrameStream:
        """The stream of the first browser to connect and report its camera (tests, benchmarks)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                ready = [s for s in self.streams.values() if s.has_camera]
            if ready:
                return ready[0]
            time.sleep(0.05)
        raise TimeoutError(f"no browser connected to {self.url} within {timeout} s")

    def snap(self, index: int, client=None) -> None:
        """Moves the camera of ``client`` (default: every browser) to training view ``index``."""
        if not 0 <= index < len(self.cameras):
            raise ValueError(f"training view {index} does not exist ({len(self.cameras)} views)")
        wxyz, position, fov_y = self.cameras[index].pose()
        clients = [client] if client is not None else list(self.server.get_clients().values())
        for c in clients:
            with c.atomic():
                c.camera.fov = float(fov_y)
                c.camera.wxyz = wxyz
                c.camera.position = position
            with self._lock:
                stream = self.streams.get(c.client_id)
            if stream is not None:  # the server knows the new camera: render it without waiting for the browser's echo
                stream.refresh()

    # ---- panel --------------------------------------------------------------------------------------
    def _show_frame_time(self, streamed: StreamedFrame | Exception) -> None:
        if isinstance(streamed, Exception):
            self.status.value = f"render failed: {streamed}"
            return
        frame = streamed.frame
        kind = "full" if streamed.full else "preview"
        self.frame_time.value = f"{frame.camera.width}x{frame.camera.height} {kind}: {frame.seconds * 1000:.0f} ms"

    def _build_panel(self) -> None:
        gui, session = self.server.gui, self.session
        # docked beside the canvas rather than floating over it: the frame is never hidden behind the panel
        gui.configure_theme(show_share_button=False)
        gui.main_panel.dock_right()
        # PRD modes are not listed as "off" for a feature field: they belong to another kind of run
        notes = session.notes + [f"{m.label}: off ({session.availability[m.name]})" for m in MODES
                                 if session.availability[m.name] is not None and m.needs != "prd"]
        gui.add_markdown("**distill3d view** " + f"`{session.source.path.name}`")
        self.mode_dropdown = gui.add_dropdown("mode", tuple(session.modes), initial_value="rgb")
        self.mode_dropdown.on_update(lambda _: self.set_mode(self.mode_dropdown.value))
        self.frame_time = gui.add_text("frame", "", disabled=True)
        self.status = gui.add_text("status", "", disabled=True)
        if notes:
            gui.add_markdown("\n".join(f"- {n}" for n in notes))

        with gui.add_folder("select (click; shift+drag a box)"):
            self.threshold = gui.add_slider("threshold", -1.0, 1.0, 0.01, self.session.config.threshold,
                                            disabled=not session.can_segment)
            self.threshold.on_update(lambda _: self._set_threshold(self.threshold.value))
            clear = gui.add_button("clear selection", disabled=not session.can_segment)
            clear.on_click(lambda _: (session.clear_selection(), self.refresh()))
            self.selected = gui.add_text("selected", "nothing", disabled=True)
        with gui.add_folder("edit"):
            self.action = gui.add_dropdown("action", EDIT_ACTIONS, initial_value="extract",
                                           disabled=not session.can_segment)
            self.color = gui.add_rgb("recolor to", (255, 0, 0), disabled=not session.can_segment)
            self.show_edit = gui.add_checkbox("show result", False, disabled=not session.can_segment)
            self.save_edit = gui.add_button("save as new PLY", disabled=not session.can_segment)
            self.save_edit.on_click(lambda _: self._guarded(self.edit))
            self.saved = gui.add_text("saved", "", disabled=True)
        if self.cameras:
            with gui.add_folder("camera"):
                self.view = gui.add_slider("training view", 0, len(self.cameras) - 1, 1, 0)
                go = gui.add_button("snap to view")
                go.on_click(lambda _: self.snap(int(self.view.value)))
        if session.prd is not None:
            with gui.add_folder("relight"):
                scene_env = gui.add_button("scene's second environment",
                                           disabled=session.source.relight_environment is None)
                scene_env.on_click(lambda _: self._guarded(lambda: self.relight("scene")))
                upload = gui.add_upload_button("upload .hdr / .exr / .npz")
                upload.on_upload(lambda _: self._guarded(lambda: self._relight_upload(upload.value)))
                learned = gui.add_button("learned light")
                learned.on_click(lambda _: self._guarded(lambda: self.relight(None)))
                self.light = gui.add_text("light", "learned", disabled=True)

    def _guarded(self, action) -> None:
        """Runs a panel action; bad input becomes the status line instead of a lost thread."""
        try:
            action()
            self.status.value = ""
        except (ValueError, FileNotFoundError, KeyError) as err:
            self.status.value = str(err)

    # ---- actions (also callable from Python) --------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        self.session._check_mode(mode)
        self.mode = mode
        self.refresh()

    def _set_threshold(self, value: float) -> None:
        selection = self.session.set_threshold(float(value))
        if selection is not None:
            self.selected.value = f"{selection.num_gaussians} Gaussians"
            self.refresh()

    def _register_gestures(self) -> None:
        if not self.session.can_segment:
            return
        self.server.scene.on_click()(lambda event: self._guarded(lambda: self._click(event)))
        self.server.scene.on_rect_select(modifier="shift")(lambda event: self._guarded(lambda: self._box(event)))

    def _stream_of(self, client_id: int) -> FrameStream:
        with self._lock:
            return self.streams[client_id]

    def _click(self, event) -> None:
        camera = self._stream_of(event.client_id).camera(full=True)
        u, v = event.screen_pos
        x = min(int(u * camera.width), camera.width - 1)
        y = min(int(v * camera.height), camera.height - 1)
        selection = self.session.click_segment(camera, x, y, float(self.threshold.value))
        self.selected.value = f"{selection.num_gaussians} Gaussians (click at {x}, {y})"
        self.refresh()

    def _box(self, event) -> None:
        camera = self._stream_of(event.client_id).camera(full=True)
        (u0, v0), (u1, v1) = event.screen_min, event.screen_max
        x0, y0 = int(min(u0, u1) * camera.width), int(min(v0, v1) * camera.height)
        x1 = max(x0 + 1, min(int(np.ceil(max(u0, u1) * camera.width)), camera.width))
        y1 = max(y0 + 1, min(int(np.ceil(max(v0, v1) * camera.height)), camera.height))
        selection = self.session.box_segment(camera, (x0, y0, x1, y1), float(self.threshold.value))
        self.selected.value = f"{selection.num_gaussians} Gaussians (box {x0},{y0}-{x1},{y1})"
        self.refresh()

    def edit_path(self, action: str) -> pathlib.Path:
        """Where the next edit is written: ``<edits>/<name>_<action>_<k>.ply``."""
        source = self.session.source.path
        folder = self.config.edits or (source if source.is_dir() else source.parent) / "edits"
        self._edits += 1
        return pathlib.Path(folder) / f"{source.stem}_{action}_{self._edits:03d}.ply"

    def edit(self) -> pathlib.Path:
        """Saves the panel's edit action on the current selection as a new PLY; returns its path."""
        action = self.action.value
        color = tuple(float(c) / 255.0 for c in self.color.value)
        path = self.session.edit(action, self.edit_path(action), color, show=bool(self.show_edit.value))
        self.last_edit = path
        self.saved.value = str(path)
        self.refresh()
        return path

    def relight(self, env) -> None:
        """Relights the PRD run (``"scene"``, a file, or None for the learned light) and redraws."""
        self.session.set_environment(env)
        self.light.value = self.session.environment_name
        self.refresh()

    def _relight_upload(self, uploaded) -> None:
        suffix = pathlib.Path(uploaded.name).suffix.lower()
        if suffix not in ENVIRONMENT_SUFFIXES:
            raise ValueError(f"{uploaded.name}: an environment map is {', '.join(ENVIRONMENT_SUFFIXES)}")
        path = pathlib.Path(self._uploads.name) / f"upload{suffix}"
        path.write_bytes(uploaded.content)
        self.relight(path)
        self.light.value = uploaded.name

    # ---- life cycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Stops every stream and the server."""
        with self._lock:
            streams = list(self.streams.values())
            self.streams.clear()
        for stream in streams:
            stream.stop()
        self.server.stop()
        self._uploads.cleanup()

    def __enter__(self) -> "ViewerServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["ViewerServer"]
