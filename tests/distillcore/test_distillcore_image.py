import pytest
import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as msssim_ssim

from distillcore.image import image_loss, ssim


def _noisy_pair(shape=(2, 3, 16, 14), dtype=torch.float32):
    target = torch.rand(shape, dtype=dtype)
    pred = (target + 0.1 * torch.randn_like(target)).clamp(0, 1)
    return pred, target


def _ssim_3dgs(img1, img2, window_size=11, sigma=1.5):
    """The 3DGS reference (utils/loss_utils.py): 2-D Gaussian window, zero padding window // 2."""
    coords = torch.arange(window_size, dtype=img1.dtype) - window_size // 2
    g = torch.exp(-coords**2 / (2 * sigma**2))
    g = g / g.sum()
    channels = img1.shape[1]
    window = (g[:, None] @ g[None, :]).expand(channels, 1, window_size, window_size)
    blur = lambda x: F.conv2d(x, window, padding=window_size // 2, groups=channels)  # noqa: E731
    mu1, mu2 = blur(img1), blur(img2)
    s1, s2, s12 = blur(img1 * img1) - mu1**2, blur(img2 * img2) - mu2**2, blur(img1 * img2) - mu1 * mu2
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2))
    return ssim_map.flatten(1).mean(1)


def test_valid_ssim_matches_pytorch_msssim():
    pred, target = _noisy_pair()
    expected = msssim_ssim(pred, target, data_range=1.0, size_average=False)
    assert torch.allclose(ssim(pred, target), expected, rtol=0, atol=1e-6)
    scaled = msssim_ssim(255 * pred, 255 * target, data_range=255.0, size_average=False)
    assert torch.allclose(ssim(255 * pred, 255 * target, data_range=255.0), scaled, rtol=0, atol=1e-6)


def test_same_padding_ssim_matches_the_3dgs_formula():
    pred, target = _noisy_pair()
    assert torch.allclose(ssim(pred, target, padding="same"), _ssim_3dgs(pred, target), rtol=0, atol=1e-6)


def test_ssim_of_an_image_with_itself_is_one_and_drops_with_noise():
    pred, target = _noisy_pair()
    assert torch.allclose(ssim(target, target), torch.ones(2))
    assert bool((ssim(pred, target) < 0.99).all())


def test_image_loss_combines_l1_and_dssim():
    pred, target = _noisy_pair()
    l1 = (pred - target).abs().mean().item()
    dssim = 1 - ssim(pred, target).mean().item()
    assert image_loss(pred, target, 0.0).item() == pytest.approx(l1, rel=1e-6)
    assert image_loss(pred, target, 1.0).item() == pytest.approx(dssim, rel=1e-6)
    assert image_loss(pred, target, 0.2).item() == pytest.approx(0.8 * l1 + 0.2 * dssim, rel=1e-6)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_ssim_gradcheck(padding):
    pred, target = _noisy_pair((1, 2, 7, 7), torch.float64)
    pred.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: ssim(p, target, 5, padding=padding), (pred,), fast_mode=True)


def test_ssim_needs_an_image_at_least_as_large_as_the_window():
    small = torch.rand(1, 3, 8, 16)
    with pytest.raises(ValueError, match="smaller than the 11x11 SSIM window"):
        ssim(small, small)
    assert ssim(small, small, padding="same").shape == (1,)
    with pytest.raises(ValueError, match="window_size must be a positive odd integer"):
        ssim(small, small, window_size=4, padding="same")
    with pytest.raises(ValueError, match="lambda_dssim must be in"):
        image_loss(small, small, 1.5, padding="same")
