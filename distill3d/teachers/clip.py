"""CLIP-style (LSeg-like) dense teacher from an OpenCLIP ViT: ``[E, g, g]`` in CLIP's joint space.

Dense features are the ViT's patch tokens after the final layer norm, mapped by the visual projection
into the image-text embedding space, and L2-normalised:

    f_p = normalize(LN_post(z_p) @ W_proj),   p = patch,

so a text query ``t = normalize(encode_text(prompt))`` scores each cell by ``<f_p, t>`` (the naive
dense-CLIP read-out; LSeg/MaskCLIP-trained checkpoints give sharper maps through the same interface).
The image is resized to the model's square input, so the grid is ``g x g`` with
``g = image_size / patch_size`` whatever the aspect ratio; feature-field training resizes rendered
maps to the teacher grid, so this is consistent. Weights are the user's OpenCLIP checkpoint.
``open_clip`` is imported only when this teacher is built: installing ``open-clip-torch`` pulls a
CUDA torch build via torchvision on CPU-only machines, so it is an optional dependency.
"""
from __future__ import annotations

import pathlib

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Teacher, freeze
from .registry import register_teacher

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def import_open_clip():
    try:
        import open_clip
    except ImportError as err:
        raise ImportError(
            "the CLIP teacher needs open-clip-torch (pip install open-clip-torch; on a CPU machine install "
            "a CPU torchvision first so pip does not fetch a CUDA torch)") from err
    return open_clip


class ClipTeacher(Teacher):
    def __init__(self, model_name: str = "ViT-B-16", checkpoint: str | pathlib.Path | None = None,
                 model_kwargs: dict | None = None):
        super().__init__()
        open_clip = import_open_clip()
        if checkpoint is not None and not pathlib.Path(checkpoint).is_file():
            raise FileNotFoundError(f"CLIP checkpoint not found: {checkpoint}")
        self.model = open_clip.create_model(
            model_name, pretrained=str(checkpoint) if checkpoint is not None else None, **(model_kwargs or {}))
        freeze(self.model)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.model_name = model_name
        visual = self.model.visual
        size = visual.image_size if isinstance(visual.image_size, int) else visual.image_size[0]
        patch = visual.patch_size if isinstance(visual.patch_size, int) else visual.patch_size[0]
        self.input_size, self.cells = size, size // patch
        self.output_stride = patch
        self.dim = int(self.model.text_projection.shape[-1]) if hasattr(self.model, "text_projection") \
            else int(visual.output_dim)
        self.register_buffer("pixel_mean", torch.tensor(CLIP_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(CLIP_STD).view(3, 1, 1), persistent=False)

    def fingerprint(self) -> str:
        return f"{super().fingerprint()}-{self.model_name}-i{self.input_size}"

    def grid(self, height: int, width: int) -> tuple[int, int]:
        return self.cells, self.cells

    def extract(self, image: Tensor) -> Tensor:
        x = F.interpolate(image[None], (self.input_size, self.input_size), mode="bilinear",
                          align_corners=False, antialias=True)
        x = (x - self.pixel_mean) / self.pixel_std
        visual = self.model.visual
        visual.output_tokens = True
        _pooled, tokens = visual(x)  # tokens [1, g*g, width], after ln_post
        if visual.proj is not None:
            tokens = tokens @ visual.proj
        tokens = F.normalize(tokens[0], dim=-1)
        return tokens.T.reshape(self.dim, self.cells, self.cells)

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> Tensor:
        """L2-normalised text embeddings ``[T, E]`` of ``prompts`` (same space as the dense features)."""
        if not prompts:
            raise ValueError("prompts is empty")
        tokens = self.tokenizer(prompts).to(self.pixel_mean.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)


@register_teacher("clip", "OpenCLIP ViT patch features in the image-text space (your checkpoint)",
                  needs_checkpoint=True)
def build_clip(checkpoint: str | pathlib.Path | None = None, model_name: str = "ViT-B-16",
               config: dict | None = None) -> ClipTeacher:
    """``config`` is passed to ``open_clip.create_model`` (tests build a small random-init model with it)."""
    return ClipTeacher(model_name, checkpoint, config)
