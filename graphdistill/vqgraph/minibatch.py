"""Neighbour-sampled mini-batch training of the VQ-GNN teacher, data-parallel over seed-node shards.

Each optimiser step takes ``batch_size`` training seeds (one permutation per epoch, the same on every
rank), rank ``r`` of ``R`` keeping every ``R``-th of them, and samples their neighbourhoods
(``graphdistill.sampling``). With :math:`Q` the nodes whose codes the last layer reads (the seeds and
their sampled neighbours), :math:`B` the seeds and :math:`P, \\bar P` the sampled edges into the
seeds and sampled non-edges inside :math:`Q` (checked against the whole graph, never an N x N
matrix), the loss of the step over all ranks is

.. math::
    \\mathcal{L} = \\frac{1}{|B|}\\sum_{i \\in B} \\mathrm{CE}_i
        + \\frac{\\lambda_{node}}{|Q| F}\\sum_{i \\in Q} \\lVert \\hat x_i - x_i \\rVert^2
        + \\frac{\\lambda_{edge}}{|P| + |\\bar P|}\\sum_{(u, v)} \\mathrm{BCE}(e_u^\\top e_v)
        + \\frac{\\beta}{|Q| d}\\sum_{i \\in Q} \\lVert \\hat z_i - \\mathrm{sg}[c_{k_i}] \\rVert^2,

every sum over all ranks' rows and every count (:math:`|B|`, ...) the all-reduced total. Each rank
scales its partial sums by ``R / total`` and DDP averages gradients over ranks, so ``R`` ranks
compute exactly the gradient of one process holding all shards (``teacher_step`` with a list of
batches). The codebook's EMA counts and sums are all-reduced by the quantizer (see
``distillcore.quantize``), k-means init and dead-code restarts draw from all ranks' rows: the codebook
stays the same on every rank.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillcore import dist
from graphdistill.sampling import CSRGraph, NeighborSampler, SampledSubgraph
from graphdistill.vqgraph.blocks import block_conv, gcn_block_weights
from graphdistill.vqgraph.config import MiniBatchConfig, TeacherConfig, TrainConfig
from graphdistill.vqgraph.fit import FitResult, fit, wrap_data_parallel
from graphdistill.vqgraph.reconstruction import NON_EDGE_OVERSAMPLING
from graphdistill.vqgraph.teacher import VQGNNTeacher


@dataclass
class TeacherBatch:
    """A sampled seed batch and its structure-reconstruction pairs.

    Shapes:
        positives [2, P], negatives [2, Q']: local ids (rows of ``subgraph.n_id``) among the first
        ``subgraph.blocks[-1].num_src`` nodes, the ones whose codes the last layer reads.
    """

    subgraph: SampledSubgraph
    positives: Tensor
    negatives: Tensor


def sample_teacher_batch(
    sampler: NeighborSampler,
    seeds: Tensor,  # [b] global ids
    config: TeacherConfig,
    generator: torch.Generator | None = None,
) -> TeacherBatch:
    """Samples the neighbourhood of ``seeds`` and the edge / non-edge pairs scored by the structure loss.

    Positives are the sampled edges into the seeds (at most ``config.max_recon_edges``, a uniform
    subset); negatives ``negatives_per_edge`` times as many uniform pairs ``(u, v)``, ``u != v``, of
    the code-level nodes that are not edges of the whole graph (rejection sampling, vectorised).
    """
    subgraph = sampler.sample(seeds, generator)
    last = subgraph.blocks[-1]
    positives = last.edge_index
    if positives.size(1) > config.max_recon_edges:
        positives = positives[:, torch.randperm(positives.size(1), generator=generator)[: config.max_recon_edges]]
    wanted = max(1, int(round(config.negatives_per_edge * positives.size(1))))
    n_id, count = subgraph.n_id, last.num_src
    chosen = torch.empty(2, 0, dtype=torch.long)
    for _ in range(100):  # each round keeps most draws on a sparse graph; 100 only bounds a dense one
        draw = torch.randint(0, count, (2, int(NON_EDGE_OVERSAMPLING * (wanted - chosen.size(1))) + 16),
                             generator=generator)
        keep = (draw[0] != draw[1]) & ~sampler.csr.has_edges(n_id[draw[0]], n_id[draw[1]])
        chosen = torch.cat([chosen, draw[:, keep]], dim=1)
        if chosen.size(1) >= wanted:
            break
    return TeacherBatch(subgraph, positives, chosen[:, :wanted])


def _rows(x, ids: Tensor) -> Tensor:
    if isinstance(x, Tensor):
        return x[ids]
    import numpy as np

    return torch.from_numpy(np.ascontiguousarray(x[ids.numpy()]))


def encode_blocks(teacher: VQGNNTeacher, subgraph: SampledSubgraph, x, degree: Tensor) -> Tensor:
    """Code vectors ``z`` [blocks[-1].num_src, code_dim] of the code-level nodes (encoder layers on blocks)."""
    gcn = teacher.config.architecture == "gcn"
    h = _rows(x, subgraph.n_id[: subgraph.blocks[0].num_src])
    for conv, block in zip(teacher.encoder, subgraph.blocks[:-1]):
        weights = gcn_block_weights(block, subgraph.n_id, degree) if gcn else None
        h = F.dropout(F.relu(block_conv(conv, h, block, weights)), teacher.config.dropout, teacher.training)
    return teacher.to_code(h)


def classify_block(teacher: VQGNNTeacher, quantized: Tensor, subgraph: SampledSubgraph, degree: Tensor) -> Tensor:
    """Seed logits [batch_size, C] from the quantised codes of the code-level nodes (the last layer)."""
    block = subgraph.blocks[-1]
    weights = gcn_block_weights(block, subgraph.n_id, degree) if teacher.config.architecture == "gcn" else None
    h = F.dropout(F.relu(block_conv(teacher.head, quantized, block, weights)), teacher.config.dropout, teacher.training)
    return teacher.classifier(h)


class TeacherBatchLoss(nn.Module):
    """The loss of the module docstring for this rank's batches; wrapped in DDP across ranks."""

    def __init__(self, teacher: VQGNNTeacher, x, y: Tensor, degree: Tensor):
        super().__init__()
        self.teacher, self.x, self.y, self.degree = teacher, x, y, degree

    def forward(self, batches: list[TeacherBatch]) -> Tensor:
        teacher, ctx = self.teacher, dist.context()
        code_rows = [b.subgraph.blocks[-1].num_src for b in batches]
        local = torch.tensor([sum(b.subgraph.batch_size for b in batches), sum(code_rows),
                              sum(b.positives.size(1) + b.negatives.size(1) for b in batches)], dtype=torch.float64)
        total = dist.all_reduce_sum(local)
        seeds_scale, rows_scale, pairs_scale = (ctx.world_size / total).tolist()
        z = torch.cat([encode_blocks(teacher, b.subgraph, self.x, self.degree) for b in batches])
        out = teacher.quantizer(z)  # one EMA update over this rank's rows, all-reduced across ranks
        loss = out.commit_loss * (z.size(0) * rows_scale)  # a mean over local rows -> over all rows
        cfg = teacher.config
        for batch, quantized, rows in zip(batches, out.quantized.split(code_rows), code_rows):
            sub = batch.subgraph
            logits = classify_block(teacher, quantized, sub, self.degree)
            loss = loss + F.cross_entropy(logits, self.y[sub.n_id[: sub.batch_size]], reduction="sum") * seeds_scale
            x_rows = _rows(self.x, sub.n_id[:rows])
            recon = F.mse_loss(teacher.feature_decoder(quantized), x_rows, reduction="sum") / x_rows.size(1)
            loss = loss + cfg.node_recon_weight * recon * rows_scale
            emb = teacher.edge_decoder(quantized)
            pairs = torch.cat([batch.positives, batch.negatives], dim=1)
            scores = (emb[pairs[0]] * emb[pairs[1]]).sum(-1)
            targets = torch.cat([scores.new_ones(batch.positives.size(1)), scores.new_zeros(batch.negatives.size(1))])
            bce = F.binary_cross_entropy_with_logits(scores, targets, reduction="sum")
            loss = loss + cfg.edge_recon_weight * bce * pairs_scale
        return loss


def shard_batches(train_nodes: Tensor, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """This rank's shard of each global batch of an epoch: one permutation of ``train_nodes`` (the same on
    every rank: ``generator`` from ``dist.rank_generator``), cut into ``batch_size`` batches, rank ``r``
    keeping positions ``r, r + R, ...``. A last batch with fewer seeds than ranks is dropped."""
    ctx = dist.context()
    order = train_nodes[torch.randperm(train_nodes.numel(), generator=generator)]
    return [b[ctx.rank::ctx.world_size] for b in order.split(batch_size) if b.numel() >= ctx.world_size]


@torch.no_grad()
def sampled_accuracy(teacher: VQGNNTeacher, sampler: NeighborSampler, x, y: Tensor, nodes: Tensor, degree: Tensor,
                     batch_size: int, seed: int) -> tuple[float, float]:
    """(accuracy, mean CE) of the teacher on ``nodes`` from sampled neighbourhoods (fixed ``seed``: the same
    samples every epoch), each rank scoring its share and the sums all-reduced."""
    teacher.eval()
    ctx = dist.context()
    generator = torch.Generator().manual_seed(seed)
    sums = torch.zeros(3, dtype=torch.float64)  # correct, summed CE, count
    for chunk in nodes[ctx.rank::ctx.world_size].split(batch_size):
        sub = sampler.sample(chunk, generator)
        out = teacher.quantizer(encode_blocks(teacher, sub, x, degree))
        logits = classify_block(teacher, out.quantized, sub, degree)
        labels = y[chunk]
        sums += torch.tensor([float((logits.argmax(-1) == labels).sum()),
                              float(F.cross_entropy(logits, labels, reduction="sum")), chunk.numel()], dtype=torch.float64)
    correct, ce, count = dist.all_reduce_sum(sums).tolist()
    return correct / count, ce / count


def train_teacher_minibatch(
    x,  # [N, F] tensor or numpy (memory-mapped) array
    csr: CSRGraph,
    y: Tensor,  # [N]
    train_nodes: Tensor,
    val_nodes: Tensor,
    num_classes: int,
    config: TeacherConfig,
    train_config: TrainConfig,
    minibatch: MiniBatchConfig,
    *,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[VQGNNTeacher, FitResult]:
    """Trains the teacher on sampled mini-batches (module docstring), data-parallel when run under
    ``distillcore.dist`` (call it on every rank); keeps the best validation epoch like ``train_teacher``.

    One epoch is one pass over ``train_nodes`` (one batch of all of them when ``minibatch.batch_size`` is
    larger); validation uses sampled neighbourhoods of ``val_nodes``
    (the same samples each epoch). Checkpoints are written by single-process runs only.

    Shapes:
        x [N, F], y [N] int64, train_nodes / val_nodes [n] int64 global ids.
    """
    if len(minibatch.fanouts) != config.num_layers:
        raise ValueError(f"fanouts needs one entry per teacher layer ({config.num_layers}), got {list(minibatch.fanouts)}")
    if train_nodes.numel() < dist.context().world_size:
        raise ValueError(f"{train_nodes.numel()} training nodes cannot be shared by {dist.context().world_size} ranks")
    batch_size = min(minibatch.batch_size, train_nodes.numel())  # a batch larger than the training set: all of it
    ctx = dist.context()
    torch.manual_seed(seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    teacher = VQGNNTeacher(x.shape[1], num_classes, config)
    model = wrap_data_parallel(TeacherBatchLoss(teacher, x, y, csr.degree()))
    optimizer = torch.optim.Adam(teacher.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
    sampler = NeighborSampler(csr, minibatch.fanouts)
    degree = csr.degree()
    sample_generator = torch.Generator().manual_seed(seed * 7919 + ctx.rank)  # each rank its own samples
    epoch = [0]

    def step() -> float:
        teacher.train()
        epoch[0] += 1
        total, count = 0.0, 0
        for shard in shard_batches(train_nodes, batch_size, dist.rank_generator(seed * 100003 + epoch[0])):
            batch = sample_teacher_batch(sampler, shard, config, sample_generator)
            optimizer.zero_grad()
            loss = model([batch])
            loss.backward()
            optimizer.step()
            total, count = total + float(loss.detach()), count + 1
        return total / max(count, 1)

    def evaluate() -> tuple[float, float]:
        return sampled_accuracy(teacher, sampler, x, y, val_nodes, degree, minibatch.batch_size, seed)

    result = fit(teacher, optimizer, step, evaluate, train_config,
                 checkpoint=checkpoint if not ctx.distributed else None,
                 desc=f"teacher ({config.architecture}, mini-batch)", progress=progress and ctx.is_main)
    return teacher.eval(), result


__all__ = ["TeacherBatch", "TeacherBatchLoss", "classify_block", "encode_blocks", "sample_teacher_batch",
           "sampled_accuracy", "shard_batches", "train_teacher_minibatch"]
