"""`distill3d view` options: where the server listens and how it streams frames."""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Literal

from distillcore.checks import check_range


@dataclasses.dataclass
class ViewerConfig:
    """Server and streaming settings (every field is a `distill3d view` flag)."""
    host: str = "127.0.0.1"  # interface to listen on (0.0.0.0: every interface)
    port: int = 8080  # TCP port; one in use is an error (no silent fallback to another port)
    max_resolution: int = 512  # long side of a still frame in pixels (the canvas size, capped)
    preview_scale: float = 0.25  # side of a frame while the camera moves, relative to a still frame
    still_seconds: float = 0.15  # the camera unchanged this long counts as still: render at full size
    image_format: Literal["jpeg", "png"] = "jpeg"  # how frames travel to the browser
    jpeg_quality: int = 90  # JPEG quality of streamed frames
    backend: Literal["auto", "native", "torch", "gsplat"] = "native"  # rasterizer backend
    device: str = "cpu"  # torch device (cpu, cuda)
    threshold: float = 0.8  # initial cosine-similarity threshold of a click / box selection
    background: str = "auto"  # colour under transparent pixels: auto (the run's), scene, white, black, R,G,B
    edits: pathlib.Path | None = None  # folder for edited PLYs (default: edits/ beside what is viewed)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        check_range(self.port, "port", 0, 65535, integer=True)
        check_range(self.max_resolution, "max_resolution", 16, integer=True)
        check_range(self.preview_scale, "preview_scale", 0, 1, low_open=True)
        check_range(self.still_seconds, "still_seconds", 0)
        check_range(self.jpeg_quality, "jpeg_quality", 1, 100, integer=True)
        check_range(self.threshold, "threshold (a cosine similarity)", -1, 1)


__all__ = ["ViewerConfig"]
