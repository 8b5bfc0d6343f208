"""BatchNorm folding for inference: the fused copy computes the unfused eval model's outputs."""
import pytest
import torch
from torch import nn

from distill3d.points.fusion import fuse_for_inference
from distill3d.points.pillars import PillarConfig, PillarDetector
from distill3d.points.point_detector import PointDetector, PointDetectorConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_scan(gen: torch.Generator, count: int, dtype: torch.dtype) -> torch.Tensor:
    """Points spread over the detectors' default range, with a few dense clusters (objects)."""
    low, high = torch.tensor([0.0, -12.8, -3.0]), torch.tensor([25.6, 12.8, 1.0])
    spread = low + torch.rand(count, 3, generator=gen) * (high - low)
    centres = low + torch.rand(4, 1, 3, generator=gen) * (high - low)
    clusters = (centres + 0.4 * torch.randn(4, count // 8, 3, generator=gen)).reshape(-1, 3).clamp(low, high - 1e-3)
    xyz = torch.cat([spread, clusters])
    return torch.cat([xyz, torch.rand(len(xyz), 1, generator=gen)], 1).to(dtype)


def randomise_batchnorm(model: nn.Module, gen: torch.Generator) -> None:
    """Running statistics and affine parameters far from the identity, so a wrong fold shows."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen))
            m.running_var.copy_(0.2 + 2 * torch.rand(n, generator=gen))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=gen))
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.3)


@pytest.mark.parametrize("family,channels_last", [("pillars", True), ("pillars", False), ("point", None)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_copy_equals_unfused_model(family, channels_last, dtype):
    gen = torch.Generator().manual_seed(7)
    model = (PillarDetector(PillarConfig(width=0.5)) if family == "pillars"
             else PointDetector(PointDetectorConfig(width=0.5, num_points=512, sa_centres=(128, 32), proposals=32,
                                                    proposal_neighbours=32)))
    randomise_batchnorm(model, gen)
    model = model.to(dtype).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_for_inference(model, channels_last=channels_last)

    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    assert all(not p.requires_grad for p in fused.parameters())
    assert not fused.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the original is untouched
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if channels_last:
        assert all(m.weight.is_contiguous(memory_format=torch.channels_last)
                   for m in fused.modules() if isinstance(m, nn.Conv2d) and m.weight.shape[-1] > 1)

    scans = [random_scan(gen, 3000, dtype), random_scan(gen, 2000, dtype)]
    inputs = model.preprocess(scans, torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = model(inputs), fuse_for_inference(model, channels_last=channels_last)(inputs)
    # 1e-5 relative to each output's scale (float32 rounding of the folded weights is about 1e-7)
    for name in ("features", "importance", "response_logits"):
        a, b = getattr(want, name), getattr(got, name)
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5 * float(a.abs().max()))
    assert want.head.keys() == got.head.keys()
    for name, a in want.head.items():
        torch.testing.assert_close(got.head[name].contiguous(), a, rtol=1e-5, atol=1e-5 * float(a.abs().max()))


def test_folding_a_transposed_convolution_uses_its_output_axis():
    gen = torch.Generator().manual_seed(1)
    seq = nn.Sequential(nn.ConvTranspose2d(3, 5, 2, 2, bias=False), nn.BatchNorm2d(5), nn.ReLU())
    randomise_batchnorm(seq, gen)
    seq.eval()
    fused = fuse_for_inference(seq)
    assert isinstance(fused[1], nn.Identity)
    x = torch.randn(2, 3, 4, 4, generator=gen)
    torch.testing.assert_close(fused(x), seq(x), rtol=1e-5, atol=1e-6)
