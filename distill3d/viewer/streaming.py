"""One browser's frame stream: a thread that re-renders when the camera moves, as nerfview does.

While the camera moves the thread renders small preview frames (``preview_scale`` of the side); once
the camera has been still for ``still_seconds`` it renders one full frame (the canvas size, its long
side capped at ``max_resolution``). Only the newest camera is rendered: moves that arrive during a
render are merged into the next frame, so a slow renderer lags by at most one frame instead of queueing.

Frames are numbered per stream; :meth:`FrameStream.wait_for_frame` lets tests and benchmarks wait for
the first frame after an event (a camera move, a click).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .camera import ViewerCamera
from .config import ViewerConfig
from .session import Frame

log = logging.getLogger(f"distillkit.{__name__}")
MIN_PREVIEW_SIDE = 8  # pixels: smaller previews show nothing recognisable


@dataclass
class StreamedFrame:
    """A frame sent to the browser: its number in the stream, whether it was a full (still) frame, the
    frame itself, and when the camera message that caused it arrived (``time.perf_counter``)."""
    number: int
    full: bool
    frame: Frame
    requested_at: float
    sent_at: float


def frame_size(canvas_width: int, canvas_height: int, max_resolution: int, scale: float = 1.0) -> tuple[int, int]:
    """``(width, height)`` of a frame for a canvas: long side capped at ``max_resolution``, times ``scale``."""
    fit = min(1.0, max_resolution / max(canvas_width, canvas_height)) * scale
    return (max(MIN_PREVIEW_SIDE, int(round(canvas_width * fit))), max(MIN_PREVIEW_SIDE, int(round(canvas_height * fit))))


class FrameStream:
    """Renders and sends frames to one viser client.

    Args:
        client: the viser ``ClientHandle``.
        render: ``(camera) -> Frame`` (the server binds the current mode).
        config: sizes and timing (:class:`~distill3d.viewer.config.ViewerConfig`).
        on_frame: called with each :class:`StreamedFrame` after it is sent (the frame-time readout).
    """

    def __init__(self, client, render: Callable[[ViewerCamera], Frame], config: ViewerConfig,
                 on_frame: Callable[[StreamedFrame], None] | None = None):
        self.client, self._render, self.config, self._on_frame = client, render, config, on_frame
        self._cond = threading.Condition()
        self._version = self._done_any = self._done_full = 0
        self._moving_until = 0.0
        self._requested_at = 0.0
        self._has_camera = False
        self._stopped = False
        self.frames: list[StreamedFrame] = []  # the last few, newest last
        self.count = 0
        client.camera.on_update(self._on_camera)
        self._thread = threading.Thread(target=self._run, name=f"viewer-stream-{client.client_id}", daemon=True)
        self._thread.start()

    # ---- events -------------------------------------------------------------------------------------
    def _on_camera(self, _camera) -> None:
        with self._cond:
            self._has_camera = True
            self._version += 1
            self._requested_at = time.perf_counter()
            self._moving_until = time.monotonic() + self.config.still_seconds
            self._cond.notify_all()

    def refresh(self) -> None:
        """Renders a full frame now (the mode, selection or model changed, the camera did not)."""
        with self._cond:
            self._version += 1
            self._requested_at = time.perf_counter()
            self._moving_until = 0.0
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)

    @property
    def has_camera(self) -> bool:
        return self._has_camera

    # ---- the camera ---------------------------------------------------------------------------------
    def camera(self, full: bool = True) -> ViewerCamera:
        """The client's current camera at the size of a full (or preview) frame."""
        cam = self.client.camera
        scale = 1.0 if full else self.config.preview_scale
        width, height = frame_size(cam.image_width, cam.image_height, self.config.max_resolution, scale)
        return ViewerCamera.from_pose(cam.wxyz, cam.position, cam.fov, width, height)

    # ---- the loop -----------------------------------------------------------------------------------
    def _next_job(self) -> tuple[bool, int, float] | None:
        """Blocks until there is something to render: ``(full, version, requested_at)``, or None to stop."""
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                if self._has_camera and self._version > self._done_full and now >= self._moving_until:
                    return True, self._version, self._requested_at
                if self._has_camera and self._version > self._done_any and now < self._moving_until:
                    return False, self._version, self._requested_at
                pending = self._has_camera and self._version > self._done_full
                self._cond.wait(timeout=max(self._moving_until - now, 1e-3) if pending else None)
            return None

    def _run(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            full, version, requested_at = job
            try:
                frame = self._render(self.camera(full))
                self.client.scene.set_background_image(frame.image, format=self.config.image_format,
                                                       jpeg_quality=self.config.jpeg_quality)
            except Exception as err:  # a bad frame must not end the stream; the panel shows the error
                log.exception("viewer: rendering a frame failed")
                frame = None
                error = err
            with self._cond:
                self._done_any = max(self._done_any, version)
                if full:
                    self._done_full = max(self._done_full, version)
                if frame is not None:
                    self.count += 1
                    streamed = StreamedFrame(self.count, full, frame, requested_at, time.perf_counter())
                    self.frames = (self.frames + [streamed])[-8:]
                self._cond.notify_all()
            if self._on_frame is not None:
                self._on_frame(streamed if frame is not None else error)

    def wait_for_frame(self, after: int = 0, full: bool = True, timeout: float = 60.0) -> StreamedFrame:
        """The first frame numbered above ``after`` (a full one when ``full``); TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for streamed in self.frames:
                    if streamed.number > after and (streamed.full or not full):
                        return streamed
                left = deadline - time.monotonic()
                if left <= 0 or self._stopped:
                    raise TimeoutError(f"no {'full ' if full else ''}frame after #{after} within {timeout} s")
                self._cond.wait(timeout=left)


__all__ = ["FrameStream", "StreamedFrame", "frame_size"]
