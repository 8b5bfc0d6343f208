"""The colour a field's transparent pixels are composited over, in training, evaluation and rendering.

``I = C + (1 - A) b`` with ``C`` the premultiplied colour and ``A`` the coverage of the splats. The
choice (``TrainConfig.background``):

- ``scene``: the colour the scene's images were composited over (black for photos without alpha);
- a colour: ``white``, ``black``, ``grey`` or ``R,G,B`` in [0, 1];
- ``random``: a new uniform colour every training step (3DGS / nerfstudio for masked scenes), so the
  field cannot paint the background into semi-transparent Gaussians; needs images with alpha, whose
  targets are re-composited over the same colour. Evaluation uses the scene's colour;
- ``learned``: one colour optimised with the field (photos whose background is a uniform colour).

Images with alpha are re-composited exactly: ``I' = I + (1 - a) (b' - b)`` (``I`` was over ``b``).
"""
from __future__ import annotations

import torch
from torch import Tensor

NAMED = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "grey": (0.5, 0.5, 0.5), "gray": (0.5, 0.5, 0.5)}
MODES = ("scene", "random", "learned")


def parse_background(spec: str) -> str | Tensor:
    """``"scene"``, ``"random"`` or ``"learned"`` as given, or the colour ``[3]`` a name / ``R,G,B`` means.

    Raises:
        ValueError: anything else (naming the accepted forms).
    """
    text = str(spec).strip().lower()
    if text in MODES:
        return text
    if text in NAMED:
        return torch.tensor(NAMED[text])
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"background must be scene, random, learned, white, black, grey or R,G,B with values "
                         f"in [0, 1], got {spec!r}")
    return torch.tensor(values)


def recomposite(images: Tensor, alphas: Tensor | None, old: Tensor, new: Tensor) -> Tensor:
    """Images composited over ``old`` moved over ``new`` (exact where the alpha is known; unchanged
    without alpha, where the background is part of the photo).

    Shapes:
        images: ``[..., H, W, 3]``; alphas: ``[..., H, W, 1]`` or None; old, new: ``[3]``.
    """
    if alphas is None:
        return images
    return images + (1.0 - alphas) * (new.to(images) - old.to(images))


def with_background(scene, spec: str):
    """``scene`` moved onto the fixed background ``spec`` (``scene``, a name or ``R,G,B``): its images
    and relit images re-composited where it has alpha, ``scene.background`` set, so every render that
    composites over ``scene.background`` (training, evaluation, relighting) uses the colour.

    Raises:
        ValueError: ``random`` / ``learned``, which need a trainer that owns the colour.
    """
    import dataclasses

    mode = parse_background(spec)
    if mode == "scene":
        return scene
    if not isinstance(mode, Tensor):
        raise ValueError(f"background {mode!r} is not available here: give a colour (white, black, R,G,B) or scene")
    def move(images):
        return None if images is None else recomposite(images, scene.alphas, scene.background, mode)

    return dataclasses.replace(scene, images=move(scene.images), relit_images=move(scene.relit_images),
                               background=mode.to(scene.background))


def resolve_colour(spec: str, scene_background: Tensor, learned: Tensor | None = None) -> Tensor:
    """The fixed colour ``[3]`` evaluation and rendering use for ``spec`` (``random`` evaluates over
    the scene's colour; ``learned`` needs the learned colour)."""
    mode = parse_background(spec)
    if isinstance(mode, Tensor):
        return mode
    if mode == "learned":
        if learned is None:
            raise ValueError("background 'learned' needs the learned colour (metrics.json of the training run)")
        return learned.detach().clamp(0, 1).float()
    return scene_background.float()


__all__ = ["parse_background", "recomposite", "resolve_colour", "with_background", "MODES", "NAMED"]
