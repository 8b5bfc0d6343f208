"""Layer-wise teacher inference over node chunks, written to memory-mapped ``.npy`` arrays (GLNN on products).

Sampled inference would give each node a random answer; full-graph inference needs every layer's
activations of every node in memory at once, with the edges. Here layer ``l`` runs over all nodes in
chunks of ``chunk_size`` targets, each chunk reading the layer-``(l-1)`` rows of the chunk and of all
its in-neighbours from a memory-mapped array and writing its own rows to the next one:

.. math::
    H^{(l)}[c] = \\sigma\\big(\\mathrm{conv}_l(H^{(l-1)}[c \\cup \\mathcal{N}(c)], A[c, c \\cup \\mathcal{N}(c)])\\big),

so peak memory is one chunk's neighbourhood plus the model, whatever the graph size, and the result
equals the full-graph forward (same layers, every neighbour kept; GCN with global degrees, see
``blocks``). The outputs (``logits.npy`` soft labels [N, C], ``embedding.npy`` code vectors [N, d],
``codes.npy`` code ids [N]) are what the student stage reads, without the graph.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from distillcore.serialization import atomic_write
from graphdistill.sampling import CSRGraph, NeighborSampler
from graphdistill.vqgraph.blocks import block_conv, gcn_block_weights
from graphdistill.vqgraph.teacher import VQGNNTeacher
from graphdistill.vqgraph.trainer import TeacherTargets

TARGET_FILES = {"logits": "logits.npy", "embedding": "embedding.npy", "codes": "codes.npy"}


@dataclass
class LayerwiseOutputs:
    """Paths of the written arrays (row ``i`` = node ``i``) and the codebook usage over all nodes."""

    logits: Path
    embedding: Path
    codes: Path
    codebook_usage: dict


def _rows(array, ids: Tensor) -> Tensor:
    """Rows ``ids`` of a tensor or (memory-mapped) numpy array, as a float tensor."""
    if isinstance(array, Tensor):
        return array[ids]
    return torch.from_numpy(np.ascontiguousarray(array[ids.numpy()]))


def _chunk_layer(conv, source, sampler: NeighborSampler, degree: Tensor, start: int, stop: int, gcn: bool) -> Tensor:
    batch = sampler.sample(torch.arange(start, stop))
    block = batch.blocks[0]
    weights = gcn_block_weights(block, batch.n_id, degree) if gcn else None
    return block_conv(conv, _rows(source, batch.n_id), block, weights)


@torch.no_grad()
def layerwise_inference(
    teacher: VQGNNTeacher,
    x,  # [N, F] tensor or numpy (memory-mapped) array
    csr: CSRGraph,
    out_dir: str | os.PathLike,
    chunk_size: int = 65536,
) -> LayerwiseOutputs:
    """Runs the teacher over all nodes layer by layer in chunks and writes its targets (module docstring).

    Args:
        teacher: a trained teacher (put in eval mode here).
        x: node features, row ``i`` = node ``i`` of ``csr``.
        csr: the graph's in-neighbour lists.
        out_dir: folder for ``logits.npy``, ``embedding.npy``, ``codes.npy``; hidden layers go to a
            temporary folder inside it, removed at the end.
        chunk_size: target nodes per chunk (memory ~ chunk_size x mean 1-hop size x width).
    Shapes:
        x [N, F]; writes logits [N, C] float32, embedding [N, code_dim] float32, codes [N] int64.
    """
    teacher.eval()
    num_nodes = csr.num_nodes
    if x.shape[0] != num_nodes:
        raise ValueError(f"x has {x.shape[0]} rows but the graph has {num_nodes} nodes")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gcn = teacher.config.architecture == "gcn"
    sampler = NeighborSampler(csr, (-1,))
    degree = csr.degree()
    ranges = [(a, min(a + chunk_size, num_nodes)) for a in range(0, num_nodes, chunk_size)]
    scratch = Path(tempfile.mkdtemp(prefix="layerwise-", dir=out_dir))
    try:
        source = x
        for index, conv in enumerate(teacher.encoder):
            hidden = np.lib.format.open_memmap(scratch / f"h{index}.npy", mode="w+", dtype=np.float32,
                                               shape=(num_nodes, teacher.config.hidden_dim))
            for a, b in ranges:
                hidden[a:b] = F.relu(_chunk_layer(conv, source, sampler, degree, a, b, gcn)).numpy()
            source = hidden
        teacher.quantizer.reset_usage()
        paths = {key: out_dir / name for key, name in TARGET_FILES.items()}

        def write_codes(tmp_embedding: Path) -> None:
            embedding = np.lib.format.open_memmap(tmp_embedding, mode="w+", dtype=np.float32,
                                                  shape=(num_nodes, teacher.config.code_dim))
            codes = np.lib.format.open_memmap(scratch / "codes.npy", mode="w+", dtype=np.int64, shape=(num_nodes,))
            for a, b in ranges:
                z = teacher.to_code(_rows(source, torch.arange(a, b)))
                embedding[a:b] = z.numpy()
                codes[a:b] = teacher.quantizer(z).indices.numpy()
            embedding.flush()
            codes.flush()

        atomic_write(paths["embedding"], write_codes)
        codes = np.load(scratch / "codes.npy", mmap_mode="r")
        codebook = teacher.codebook.detach()

        def write_logits(tmp: Path) -> None:
            logits = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                               shape=(num_nodes, teacher.num_classes))
            for a, b in ranges:
                batch = sampler.sample(torch.arange(a, b))
                block = batch.blocks[0]
                weights = gcn_block_weights(block, batch.n_id, degree) if gcn else None
                quantized = codebook[torch.from_numpy(np.ascontiguousarray(codes[batch.n_id.numpy()]))]
                logits[a:b] = teacher.classifier(F.relu(block_conv(teacher.head, quantized, block, weights))).numpy()
            logits.flush()

        atomic_write(paths["logits"], write_logits)
        atomic_write(paths["codes"], lambda tmp: shutil.copyfile(scratch / "codes.npy", tmp))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return LayerwiseOutputs(paths["logits"], paths["embedding"], paths["codes"], teacher.quantizer.usage())


def load_targets(outputs: LayerwiseOutputs, codebook: Tensor, similarity: str) -> TeacherTargets:
    """The student's :class:`TeacherTargets` backed by the memory-mapped files (pages read on demand).

    The arrays are mapped copy-on-write (``mmap_mode="c"``): torch needs writable memory, and nothing
    written through it reaches the files.
    """
    logits = torch.from_numpy(np.load(outputs.logits, mmap_mode="c", allow_pickle=False))
    embedding = torch.from_numpy(np.load(outputs.embedding, mmap_mode="c", allow_pickle=False))
    return TeacherTargets(logits, embedding, codebook.detach().clone(), similarity)


__all__ = ["LayerwiseOutputs", "TARGET_FILES", "layerwise_inference", "load_targets"]
