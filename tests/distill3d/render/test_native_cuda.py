"""Native CUDA kernels: compile checks everywhere nvcc exists, correctness where a GPU exists.

The .cu files include no torch header, so a bare ``nvcc -c`` checks each in seconds on machines without
a GPU or a CUDA torch; the torch side of the CUDA build (csrc/bindings.cpp with D3_WITH_CUDA) gets a
syntax check against torch's headers and the CUDA toolkit's.
"""
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import torch
from torch.utils import cpp_extension

from distill3d.render import compositing, native, tiles

CSRC = native.CSRC
NVCC = shutil.which("nvcc")


@pytest.mark.parametrize("source", sorted(p.name for p in (CSRC / "cuda").glob("*.cu")))
def test_cuda_kernel_compiles(source, tmp_path):
    if NVCC is None:
        pytest.skip("nvcc not found")
    cmd = [NVCC, "-std=c++17", "-O3", "--use_fast_math", f"-I{CSRC / 'include'}", f"-I{CSRC}", "-c",
           str(CSRC / "cuda" / source), "-o", str(tmp_path / "kernel.o")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"nvcc failed on {source}:\n{result.stderr}"
    assert (tmp_path / "kernel.o").stat().st_size > 0


@pytest.mark.slow
def test_cuda_bindings_compile(tmp_path):
    if NVCC is None:
        pytest.skip("nvcc not found")
    cuda_include = Path(NVCC).resolve().parent.parent / "include"
    if not (cuda_include / "cuda_runtime_api.h").exists():
        cuda_include = Path("/usr/local/cuda/include")
    if not (cuda_include / "cuda_runtime_api.h").exists():
        pytest.skip("CUDA toolkit headers not found")
    # A CPU build of torch ships c10's CUDA headers but not this one, which CMake generates for CUDA
    # builds; an empty stand-in is enough for a syntax check.
    stub = tmp_path / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
    stub.parent.mkdir(parents=True)
    stub.write_text("#pragma once\n")
    includes = [f"-I{p}" for p in cpp_extension.include_paths()] + [
        f"-I{sysconfig.get_paths()['include']}", f"-I{cuda_include}", f"-I{tmp_path}",
        f"-I{CSRC / 'include'}", f"-I{CSRC}",
    ]
    cmd = [shutil.which("c++") or "c++", "-std=c++20", "-fsyntax-only", "-DD3_WITH_CUDA",
           "-DTORCH_EXTENSION_NAME=distill3d_native_check", *includes, str(CSRC / "bindings.cpp")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"bindings.cpp with D3_WITH_CUDA does not compile:\n{result.stderr[-4000:]}"


@pytest.mark.cuda
def test_cuda_kernels_match_torch_reference():
    if not native.native_available("cuda"):
        pytest.skip(native.native_build_error() or "no GPU with a CUDA build of torch")
    from test_native_rasterize import TILE, splats_2d  # the shared scene builder (same test folder)

    width, height, channels = 45, 37, 33
    cpu = splats_2d(D=channels, width=width, height=height)
    means2d, conics, colors, opacities, radii, depths = (t.cuda() for t in cpu)
    tile_width, tile_height = tiles.tile_grid(width, height, TILE)
    want_isect = tiles.isect_tiles(cpu[0], cpu[4], cpu[5], TILE, tile_width, tile_height)
    got_isect = native.isect_tiles_native(means2d, radii, depths, TILE, tile_width, tile_height)
    for w, g in zip(want_isect, got_isect):
        assert torch.equal(w, g.cpu())
    offsets = native.isect_offset_encode_native(got_isect[1], 2, tile_width, tile_height)
    assert torch.equal(offsets.cpu(), tiles.isect_offset_encode(want_isect[1], 2, tile_width, tile_height))
    backgrounds = torch.rand(2, channels)
    upstream = torch.randn(2, height, width, channels)
    outputs = []
    for fn, device in ((compositing.rasterize_to_pixels, "cpu"), (native.rasterize_to_pixels_native, "cuda")):
        inputs = [t.detach().to(device).requires_grad_() for t in (cpu[0], cpu[1], cpu[2], cpu[3], backgrounds)]
        render, alpha = fn(*inputs[:4], width, height, TILE, offsets.to(device), got_isect[2].to(device), inputs[4], 3)
        ((render * upstream.to(device)).sum() + alpha.sum()).backward()
        outputs.append([render.detach().cpu(), alpha.detach().cpu()] + [t.grad.cpu() for t in inputs])
    for want, got in zip(*outputs):
        scale = want.abs().max().clamp(min=1e-12)
        assert float((got - want).abs().max() / scale) < 1e-4
