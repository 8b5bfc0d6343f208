"""Tile binning: the contract's tile rule by brute force, gsplat's reference, depth order and ties."""
import math

import torch
from gsplat.cuda._torch_impl import _isect_offset_encode, _isect_tiles

from distill3d.render.tiles import isect_offset_encode, isect_tiles, tile_grid


def _projected(C=2, N=40, width=50, height=37):
    means2d = torch.rand(C, N, 2) * torch.tensor([width * 1.4, height * 1.4]) - torch.tensor([width * 0.2, height * 0.2])
    radii = torch.randint(0, 12, (C, N, 1), dtype=torch.int32).expand(C, N, 2).contiguous()
    depths = torch.rand(C, N) * 5 + 0.1
    depths[0, 1] = depths[0, 2]  # a depth tie: broken by Gaussian index
    means2d[0, 2] = means2d[0, 1]
    radii[0, 1:3] = 5
    return means2d, radii, depths, width, height


def test_tile_lists_follow_the_contract_rule():
    means2d, radii, depths, width, height = _projected()
    ts = 8
    tw, th = tile_grid(width, height, ts)
    tiles_per_gauss, isect_ids, flatten_ids = isect_tiles(means2d, radii, depths, ts, tw, th)
    offsets = isect_offset_encode(isect_ids, 2, tw, th)
    ends = torch.cat([offsets.reshape(-1)[1:], torch.tensor([flatten_ids.numel()], dtype=torch.int32)])
    C, N = depths.shape
    for c in range(C):
        for ty in range(th):
            for tx in range(tw):
                expected = []
                for g in range(N):
                    mx, my = means2d[c, g].tolist()
                    r = int(radii[c, g, 0])
                    x0, x1 = (min(max(math.floor((mx - r) / ts), 0), tw), min(max(math.ceil((mx + r) / ts), 0), tw))
                    y0, y1 = (min(max(math.floor((my - r) / ts), 0), th), min(max(math.ceil((my + r) / ts), 0), th))
                    if r > 0 and x0 <= tx < x1 and y0 <= ty < y1:
                        expected.append((float(depths[c, g]), g))
                t = (c * th + ty) * tw + tx
                got = flatten_ids[offsets.reshape(-1)[t] : ends[t]].tolist()
                assert got == [c * N + g for _, g in sorted(expected)]
    assert tiles_per_gauss.sum() == flatten_ids.numel()
    assert flatten_ids.dtype == torch.int32 and isect_ids.dtype == torch.int64 and offsets.shape == (2, th, tw)


def test_tiles_match_gsplat_reference():
    means2d, radii, depths, width, height = _projected(C=2, N=30)
    tw, th = tile_grid(width, height, 16)  # 4 x 3 tiles
    ours = isect_tiles(means2d, radii, depths, 16, tw, th)
    theirs = _isect_tiles(means2d, radii, depths, 16, tw, th)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    assert torch.equal(isect_offset_encode(ours[1], 2, tw, th), _isect_offset_encode(theirs[1], 2, tw, th))


def test_no_gaussians_gives_empty_lists():
    tiles_per_gauss, isect_ids, flatten_ids = isect_tiles(torch.zeros(1, 0, 2), torch.zeros(1, 0, 2, dtype=torch.int32), torch.zeros(1, 0), 16, 2, 2)
    assert flatten_ids.numel() == 0 and tiles_per_gauss.shape == (1, 0)
    assert torch.equal(isect_offset_encode(isect_ids, 1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.int32))
