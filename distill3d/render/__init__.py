"""Gaussian splatting rasterizer: RGB, depth and N-dimensional features of 3D Gaussians in one pass."""
from distill3d.render.compositing import rasterize_to_pixels
from distill3d.render.projection import project_gaussians
from distill3d.render.rasterize import available_backends, rasterize
from distill3d.render.sh import spherical_harmonics
from distill3d.render.tiles import isect_offset_encode, isect_tiles

__all__ = [
    "available_backends",
    "isect_offset_encode",
    "isect_tiles",
    "project_gaussians",
    "rasterize",
    "rasterize_to_pixels",
    "spherical_harmonics",
]
