"""MLP student: classifies nodes from their features alone, no graph needed at inference.

.. math::
    h^{(l)} = \\mathrm{dropout}(\\mathrm{ReLU}(\\mathrm{norm}(W_l h^{(l-1)}))), \\qquad
    \\hat y = W_L h^{(L-1)}, \\qquad e = W_e h^{(L-1)},

where :math:`e` (``code_dim``, optional) is the embedding scored against the teacher's codebook during
distillation. ``forward`` returns only the logits, so a saved student exports to TorchScript as is.
"""
from __future__ import annotations

import os
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillcore.checks import check_positive, check_tensor
from distillcore.serialization import atomic_write, load_state, save_atomic
from graphdistill.vqgraph.config import StudentConfig

CHECKPOINT_FORMAT = "distillkit.vqgraph.mlp_student/1"


class MLPStudent(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, config: StudentConfig, code_dim: int | None = None):
        super().__init__()
        if config.num_layers < 2:
            raise ValueError(f"the student needs num_layers >= 2 (a hidden layer feeds the code head), got {config.num_layers}")
        if config.norm not in ("none", "batch", "layer"):
            raise ValueError(f"norm must be 'none', 'batch' or 'layer', got {config.norm!r}")
        self.config = config
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.code_dim = code_dim
        self.dropout = config.dropout
        dims = [in_dim] + [config.hidden_dim] * (config.num_layers - 1)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        norm = {"none": nn.Identity, "batch": nn.BatchNorm1d, "layer": nn.LayerNorm}[config.norm]
        self.norms = nn.ModuleList(norm(config.hidden_dim) if config.norm != "none" else nn.Identity()
                                   for _ in self.hidden)
        self.classifier = nn.Linear(config.hidden_dim, num_classes)
        self.code_head = nn.Linear(config.hidden_dim, code_dim) if code_dim else None

    def features(self, x: Tensor) -> Tensor:  # [N, F] -> [N, hidden_dim]
        for linear, norm in zip(self.hidden, self.norms):
            x = F.dropout(F.relu(norm(linear(x))), self.dropout, self.training)
        return x

    def forward(self, x: Tensor) -> Tensor:  # [N, F] -> [N, C]
        return self.classifier(self.features(x))

    def forward_with_code(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits [N, C] and the code-space embedding [N, code_dim] used by soft code assignment."""
        if self.code_head is None:
            raise RuntimeError("this student was built without code_dim, it has no code embedding")
        h = self.features(x)
        return self.classifier(h), self.code_head(h)

    def check_features(self, x: Tensor) -> Tensor:
        """Raises a clear error unless ``x`` is a finite [N, in_dim] float matrix."""
        check_tensor(x, "features", ndim=2, floating=True)
        if x.size(1) != self.in_dim:
            raise ValueError(f"features have {x.size(1)} columns but the student was trained on {self.in_dim}")
        return x

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 65536) -> tuple[Tensor, Tensor]:
        """Class ids [N] and probabilities [N, C] from node features [N, F], ``batch_size`` rows at a time."""
        self.check_features(x)
        check_positive(batch_size, "batch_size")
        was_training = self.training
        self.eval()
        probs = torch.cat([F.softmax(self(chunk), dim=-1) for chunk in x.split(int(batch_size))])
        self.train(was_training)
        return probs.argmax(-1), probs

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        """Writes config + weights atomically; ``extra`` (e.g. metrics) is stored alongside."""
        save_atomic({
            "format": CHECKPOINT_FORMAT,
            "in_dim": self.in_dim,
            "num_classes": self.num_classes,
            "code_dim": self.code_dim,
            "config": asdict(self.config),
            "state_dict": self.state_dict(),
            "extra": extra or {},
        }, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MLPStudent":
        blob = load_state(path, what="saved MLP student")
        if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a saved MLP student (expected format {CHECKPOINT_FORMAT})")
        student = cls(blob["in_dim"], blob["num_classes"], StudentConfig(**blob["config"]), blob["code_dim"])
        student.load_state_dict(blob["state_dict"])
        return student.eval()

    def export_torchscript(self, path: str | os.PathLike) -> None:
        """Saves a TorchScript module ``features [N, F] -> logits [N, C]`` (eval mode) atomically."""
        was_training = self.training
        scripted = torch.jit.script(self.eval())
        self.train(was_training)
        atomic_write(path, lambda tmp: scripted.save(str(tmp)))
