"""Vector quantizer (VQ-VAE, van den Oord et al. 2017) on top of ``vector-quantize-pytorch``.

Each input row :math:`x_n` (unit-normalised first for the cosine codebook) is replaced by its
nearest code

.. math::
    k_n = \\arg\\min_k \\lVert x_n - e_k \\rVert_2 \\quad (\\text{L2}) \\qquad
    k_n = \\arg\\max_k \\hat{x}_n \\cdot e_k \\quad (\\text{cosine}, \\lVert e_k \\rVert = 1)

with the straight-through estimator :math:`q_n = x_n + \\mathrm{sg}[e_{k_n} - x_n]` (value
:math:`e_{k_n}`, gradient of the identity). The loss to add to the training objective is

.. math::
    \\mathcal{L}_{VQ} = \\beta \\, \\overline{(x - \\mathrm{sg}[e_k])^2}
        \\; \\big[ + \\, \\overline{(\\mathrm{sg}[x] - e_k)^2} \\text{ with gradient updates} \\big]

(means over rows and channels). Codebook updates:

- ``"ema"``: :math:`N_k \\leftarrow \\gamma N_k + (1-\\gamma) n_k`,
  :math:`m_k \\leftarrow \\gamma m_k + (1-\\gamma) \\sum_{n: k_n = k} x_n`, :math:`e_k = m_k / N_k`
  (Laplace-smoothed), every training forward;
- ``"grad"``: :math:`e_k` is an ``nn.Parameter`` trained by the codebook term above.

Dead-code restart: in training, a code whose EMA count :math:`N_k` falls below
``dead_code_threshold`` is replaced by a random input row of the batch (0 disables it). Across
ranks (built after the process group started) the library all-reduces the EMA counts and sums, and
draws restart rows from all ranks' batches with the same result on each; our k-means init gathers
the rows of all ranks too, so the codebook stays identical on every rank. k-means
initialisation runs on the first batch seen (with fewer rows than codes, rows are repeated). Usage statistics count assignments since the last
:meth:`VectorQuantizer.reset_usage`: codes used and perplexity :math:`\\exp(-\\sum_k p_k \\log p_k)`.

What the library does and what we add: nearest-code search, EMA updates, the k-means iterations and
dead-code restart are ``VectorQuantize``'s. We compute the losses ourselves because its
learnable-codebook mode puts one ``commitment_weight`` on both the encoder and the codebook term
(VQ-VAE weights the codebook term 1); we turn off its default rotation trick to get the plain
straight-through estimator; we write codes through :meth:`VectorQuantizer.set_codebook` because its
setter and its k-means init leave the EMA sums inconsistent with the codes; and it cannot learn a
cosine codebook by gradient, which we reject with a clear error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from vector_quantize_pytorch import VectorQuantize
from vector_quantize_pytorch.vector_quantize_pytorch import kmeans

from distillcore import dist
from distillcore.checks import check_positive, check_tensor
from distillcore.code_assignment import SIMILARITIES

UPDATES = ("ema", "grad")


@dataclass
class QuantizerConfig:
    codebook_size: int  # K
    dim: int  # input and code dimension
    similarity: Literal["l2", "cosine"] = "l2"
    commitment_weight: float = 0.25  # beta
    update: Literal["ema", "grad"] = "ema"
    ema_decay: float = 0.99  # gamma, used by "ema" and by dead-code tracking
    kmeans_init: bool = False
    kmeans_iters: int = 10
    dead_code_threshold: float = 0.0  # restart codes whose EMA count drops below this; 0 = never

    def __post_init__(self) -> None:
        for name in ("codebook_size", "dim", "kmeans_iters"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {self.similarity!r}")
        if self.update not in UPDATES:
            raise ValueError(f"update must be one of {UPDATES}, got {self.update!r}")
        if self.update == "grad" and self.similarity == "cosine":
            raise ValueError(
                "update='grad' with similarity='cosine' is not supported (vector-quantize-pytorch cannot "
                "learn a cosine codebook by gradient): use update='ema' for a cosine codebook"
            )
        check_positive(self.commitment_weight, "commitment_weight", strict=False)
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        check_positive(self.dead_code_threshold, "dead_code_threshold", strict=False)


class QuantizerOutput(NamedTuple):
    quantized: Tensor  # [N, dim], straight-through: value e_k, gradient to x
    indices: Tensor  # [N] long, code of each row
    commit_loss: Tensor  # [], the VQ loss of the module docstring (0 outside training)


class VectorQuantizer(nn.Module):
    """Vector quantizer with a reachable codebook, see the module docstring."""

    def __init__(self, config: QuantizerConfig):
        super().__init__()
        self.config = config
        self.vq = VectorQuantize(
            dim=config.dim,
            codebook_size=config.codebook_size,
            decay=config.ema_decay,
            use_cosine_sim=config.similarity == "cosine",
            threshold_ema_dead_code=config.dead_code_threshold,
            # k-means init is ours (see _kmeans_init_): the library's sets codes of empty clusters to 0.
            kmeans_init=False,
            ema_update=config.update == "ema",
            learnable_codebook=config.update == "grad",
            # Our losses below (see the module docstring); the library's would double-count them.
            commitment_weight=0.0,
            rotation_trick=False,
        )
        self.register_buffer("code_counts", torch.zeros(config.codebook_size, dtype=torch.long), persistent=False)
        self.register_buffer("initialized", torch.tensor(not config.kmeans_init))

    @property
    def codebook(self) -> Tensor:  # [K, dim]
        """The current codes (unit-norm for the cosine codebook): what soft code assignment scores."""
        return self.vq.codebook

    @torch.no_grad()
    def set_codebook(self, codes: Tensor) -> None:  # codes: [K, dim]
        """Replaces the codes (normalised for a cosine codebook) and restarts their EMA statistics.

        The library's ``codebook`` setter writes the codes only: its running sums keep the old ones
        and the next EMA step would pull the codes back. Here each code restarts as a cluster of
        ``max(1, dead_code_threshold)`` rows at the code, the count the library gives restarted codes.
        """
        check_tensor(codes, "codes", shape=(self.config.codebook_size, self.config.dim), floating=True)
        if self.config.similarity == "cosine":
            codes = F.normalize(codes, dim=-1)
        count = max(1.0, self.config.dead_code_threshold)
        state = self.vq._codebook
        state.embed.data.copy_(codes[None])
        state.embed_avg.copy_(codes[None] * count)
        state.cluster_size.fill_(count)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _kmeans_init_(self, x: Tensor) -> None:
        """k-means on the first batch (the library's Lloyd iterations, spherical for cosine).

        The library's own k-means init stores ``mean * count`` as the EMA sum, so a code whose
        cluster ended empty becomes the zero vector; k-means keeps its sampled row instead, which we
        write with :meth:`set_codebook`.
        Across ranks (a process group of ``distillcore.dist``) it runs once on rank 0 over all ranks'
        rows and the codes are broadcast, so every rank starts from the same codebook.
        """
        rows = F.normalize(x, dim=-1) if self.config.similarity == "cosine" else x
        ctx = dist.context()
        if ctx.distributed:  # one k-means over every rank's rows, run on rank 0: the same codes everywhere
            rows = torch.cat(dist.all_gather_variable(rows.detach().float()))
            if not ctx.is_main:
                self.set_codebook(dist.broadcast_object(None))
                return
        means, _ = kmeans(
            rows.detach().float()[None],
            self.config.codebook_size,
            self.config.kmeans_iters,
            use_cosine_sim=self.config.similarity == "cosine",
        )
        if ctx.distributed:
            dist.broadcast_object(means[0])
        self.set_codebook(means[0])

    def forward(self, x: Tensor) -> QuantizerOutput:  # x: [N, dim]
        check_tensor(x, "x", shape=(None, self.config.dim), floating=True)
        if not bool(self.initialized):
            self._kmeans_init_(x)
        quantized, indices, _ = self.vq(x[None])
        quantized, indices = quantized[0], indices[0]
        with torch.no_grad():
            self.code_counts += torch.bincount(indices, minlength=self.config.codebook_size)

        if not self.training:
            return QuantizerOutput(quantized, indices, x.new_zeros(()))
        target = F.normalize(x, dim=-1) if self.config.similarity == "cosine" else x
        # The value of `quantized` is the code chosen before this step's EMA update moved it.
        loss = self.config.commitment_weight * F.mse_loss(target, quantized.detach())
        if self.config.update == "grad":
            loss = loss + F.mse_loss(self.codebook[indices], target.detach())
        return QuantizerOutput(quantized, indices, loss)

    def reset_usage(self) -> None:
        self.code_counts.zero_()

    def usage(self) -> dict:
        """``codes_used`` (codes assigned at least once) and ``perplexity`` (0 before any input)."""
        counts = self.code_counts.double()
        total = counts.sum()
        if total == 0:
            return {"codes_used": 0, "perplexity": 0.0}
        p = counts / total
        entropy = -(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum()
        return {"codes_used": int((counts > 0).sum()), "perplexity": float(entropy.exp())}


__all__ = ["QuantizerConfig", "QuantizerOutput", "VectorQuantizer"]
