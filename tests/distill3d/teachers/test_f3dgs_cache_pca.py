"""Feature cache hits/misses and the PCA-to-RGB visualisation."""
import pytest
import torch

from distill3d.teachers import FeatureCache, build_teacher, fit_pca, pca_to_rgb


@pytest.fixture(scope="module")
def xfeat():
    return build_teacher("xfeat")


def test_cache_miss_then_hit_and_invalidation(tmp_path, xfeat):
    cache = FeatureCache(tmp_path, "scene one", xfeat)
    image = torch.rand(3, 40, 48)
    first = cache("r_0.png", image)
    assert (cache.hits, cache.misses) == (0, 1)
    again = FeatureCache(tmp_path, "scene one", xfeat)("r_0.png", image)
    second = cache("r_0.png", image)
    assert (cache.hits, cache.misses) == (1, 1)
    assert torch.equal(first, second) and torch.equal(first, again)
    torch.testing.assert_close(first, xfeat(image))
    # an edited image, another scene or another teacher configuration are misses
    cache("r_0.png", image.flip(-1))
    assert cache.misses == 2
    other_scene = FeatureCache(tmp_path, "scene two", xfeat)
    other_scene("r_0.png", image)
    assert other_scene.misses == 1
    raw = build_teacher("xfeat", normalize=False)
    assert FeatureCache(tmp_path, "scene one", raw).directory != cache.directory
    assert not list(tmp_path.rglob("*.tmp*"))  # atomic writes leave no temporaries
    with pytest.raises(ValueError, match="3 channels"):
        cache("bad.png", torch.rand(1, 40, 48))


def test_pca_recovers_the_dominant_directions():
    generator = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(16, 3, generator=generator))  # orthonormal [16, 3]
    # zero-mean, mutually uncorrelated coordinates with variances 81 > 16 > 4 (exact principal axes)
    raw = torch.randn(500, 3, generator=generator)
    coords, _ = torch.linalg.qr(raw - raw.mean(0))
    coords = (coords * torch.tensor([9.0, 4.0, 2.0]) * 500 ** 0.5).T
    rows = (basis @ coords).T + 1e-3 * torch.randn(500, 16, generator=generator)
    features = rows.T.reshape(16, 20, 25)
    projection = fit_pca(features)
    overlap = (projection.components @ basis).abs()
    torch.testing.assert_close(overlap, torch.eye(3), atol=2e-3, rtol=0)
    # sign convention: the largest-magnitude loading of each component is positive
    strongest = projection.components.gather(1, projection.components.abs().argmax(1, keepdim=True))
    assert (strongest > 0).all()
    rgb = pca_to_rgb(features)
    assert rgb.shape == (3, 20, 25) and rgb.min() >= 0 and rgb.max() <= 1
    torch.testing.assert_close(rgb, projection(features))
    # 1% clipping: about 1% of the pixels sit at each end of each channel
    saturated = (rgb <= 0).float().mean(dim=(1, 2))
    assert ((saturated > 0.005) & (saturated < 0.02)).all()


def test_pca_fit_on_several_views_and_errors():
    a, b = torch.randn(8, 5, 5), torch.randn(8, 6, 4)
    projection = fit_pca([a, b])
    assert projection(b).shape == (3, 6, 4)
    assert fit_pca(torch.randn(2, 4, 4)).components[2].abs().sum() == 0  # D < 3: zero third channel
    with pytest.raises(ValueError, match="channels"):
        projection(torch.randn(7, 5, 5))
    with pytest.raises(ValueError, match="disagree"):
        fit_pca([a, torch.randn(9, 5, 5)])
