"""A browser viewer for trained fields, served with viser (optional extra ``[viewer]``).

Rendering is ours (``distill3d.render``) and runs in the server process; the browser shows the frames.
Everything the server does is a plain call on :class:`ViewerSession` (render a mode, segment by a
click or a box, edit, relight), so notebooks and tests use it without a browser. ``distill3d view`` is
the command; ``distill3d points view`` shows LiDAR scans with predicted and ground-truth boxes.
"""
from __future__ import annotations

import importlib

# public name -> defining module, imported on first use (viser only when a server starts)
_EXPORTS = {
    "ViewerCamera": "camera", "ViewerConfig": "config", "ViewerSession": "session", "SessionConfig": "session",
    "Frame": "session", "Selection": "session", "ViewerSource": "source", "load_source": "source",
    "ViewerServer": "server", "MODES": "modes", "PortInUseError": "ports",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'distill3d.viewer' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


__all__ = list(_EXPORTS)
