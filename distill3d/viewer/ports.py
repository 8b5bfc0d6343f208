"""A listening port that is already taken is an error, not a silent move to the next one (viser's
default): a user who typed ``--port 8080`` opens that address in the browser."""
from __future__ import annotations

import errno
import socket


class PortInUseError(ValueError):
    """The requested port is taken (a ``ValueError``: the console reports it as one line, exit code 2)."""


def check_port_free(host: str, port: int) -> None:
    """Raises :class:`PortInUseError` when nothing can listen on ``host:port`` right now (port 0: any free one)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # as asyncio's server does: a port left in TIME_WAIT by a closed server is free, a listening one is not
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortInUseError(f"port {port} on {host} is in use (or not allowed): pick another with --port") from None
            raise ValueError(f"cannot listen on {host}:{port}: {err.strerror}") from None


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (for tests and benchmarks: the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


__all__ = ["PortInUseError", "check_port_free", "free_port"]
