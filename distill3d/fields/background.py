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

Photos of the world (no alpha) show what lies behind the objects: ground, walls, sky. There the
background is modelled by Gaussians like everything else: the finite part by the initial points, the
sky by a **sky sphere** (``InitConfig.sky_points``), a shell of ``S`` distant Gaussians on a Fibonacci
sphere around the cameras' focus ``c``,

    p_k = c + R (sqrt(1 - z_k^2) cos(k g), sqrt(1 - z_k^2) sin(k g), z_k),  z_k = 1 - (2k + 1) / S,
    g = pi (3 - sqrt 5),  R = sky_radius * mean_i |o_i - c|,

coloured from the views that see them (``distill3d.data.points.colors_from_views``). They are
ordinary splats: they carry features (so the sky is a segment like any other), densify, and are
saved in the PLY, which is what 3DGS users expect of a field from photos; compositing over a
constant colour could not show the sky's gradient or carry its features.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from distillcore.checks import check_positive
from distill3d.data.points import camera_focus, colors_from_views

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


def fibonacci_sphere(num_points: int) -> Tensor:
    """``num_points`` unit directions ``[S, 3]`` spread evenly over the sphere (formula in the module doc)."""
    if num_points < 1:
        raise ValueError(f"a sphere needs at least 1 point, got {num_points}")
    k = torch.arange(num_points, dtype=torch.float64)
    z = 1.0 - (2.0 * k + 1.0) / num_points
    ring = (1.0 - z * z).sqrt()
    angle = k * math.pi * (3.0 - math.sqrt(5.0))
    return torch.stack([ring * angle.cos(), ring * angle.sin(), z], dim=-1).float()


def sky_sphere(scene, num_points: int, radius: float) -> tuple[Tensor, Tensor]:
    """Sky-sphere Gaussians' centres and colours ``([S, 3], [S, 3])`` for ``scene`` (module doc):
    ``radius`` times the mean camera distance from the cameras' focus.

    Args:
        scene: a :class:`distill3d.data.Scene` (its cameras place the sphere, its images colour it).
        num_points: ``S``, the number of distant Gaussians.
        radius: the sphere's radius as a multiple of the mean camera distance (beyond every surface).
    """
    check_positive(radius, "sky_radius")
    focus = camera_focus(scene.viewmats)
    distance = (scene.camera_centers() - focus).norm(dim=-1).mean()
    points = focus + radius * distance * fibonacci_sphere(num_points)
    return points, colors_from_views(points, scene)


__all__ = ["parse_background", "recomposite", "resolve_colour", "with_background", "fibonacci_sphere", "sky_sphere",
           "MODES", "NAMED"]
