"""Bitwise-reproducible training: torch's deterministic algorithms for the length of a block.

Seeding alone does not make a run repeatable. Some torch kernels add floats in an order that depends on
thread scheduling: on the CPU, the backward of advanced indexing ``t[idx]`` (``index_put_`` with
``accumulate=True``) runs in parallel with atomic adds once ``idx`` has more than ~32k entries (the
VQGraph edge-reconstruction loss indexes node embeddings by every sampled edge); on CUDA, scatter and
index-add kernels use atomics. Under ``torch.use_deterministic_algorithms(True)`` torch switches those
kernels to ordered implementations (and the native rasterizer's CUDA backward to its ordered mode,
:func:`distill3d.render.native.deterministic_backward`).

``warn_only=True``: an operation without a deterministic implementation warns instead of stopping a
run. Full determinism of cuBLAS on CUDA additionally needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the
environment before the process starts (torch's reproducibility notes).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Runs the block under ``torch.use_deterministic_algorithms(True, warn_only=True)`` when ``enabled``
    and restores the previous setting afterwards (also on error); ``enabled=False``, or a process that
    enabled them already (perhaps strictly, without ``warn_only``), changes nothing."""
    if not enabled or torch.are_deterministic_algorithms_enabled():
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn_only)


__all__ = ["deterministic_algorithms"]
