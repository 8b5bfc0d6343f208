"""Speed-up decoder PCA initialisation: at init it decodes the whitened PCA coordinates of a teacher
vector to the teacher's projection onto its top-k principal subspace, as sklearn's PCA computes it."""
import sys
from pathlib import Path

import pytest
import torch

from distill3d.fields.config import TrainConfig
from distill3d.fields.decoder import SpeedUpDecoder, teacher_pca
from distill3d.fields.trainer import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from f3dgs_tiny_scene import tiny_scene  # noqa: E402


def _maps(seed: int = 0, dim: int = 12):
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=g, dtype=torch.float64) * torch.linspace(0.1, 3.0, dim, dtype=torch.float64)
    return [(mixing @ torch.randn(dim, 30, generator=g, dtype=torch.float64)).reshape(dim, 5, 6) + 2.0 for _ in range(3)]


@pytest.mark.parametrize("k", [1, 4, 12])
def test_pca_init_decodes_to_the_top_k_projection(k):
    sklearn = pytest.importorskip("sklearn.decomposition")
    maps = _maps()
    vectors = torch.cat([m.flatten(1).T for m in maps])  # [90, 12]
    mean, basis = teacher_pca(maps, k)
    decoder = SpeedUpDecoder(k, 12).double()
    decoder.init_pca(mean, basis)
    pca = sklearn.PCA(k).fit(vectors.numpy())
    reference = torch.from_numpy(pca.inverse_transform(pca.transform(vectors.numpy())))
    # whitened coordinates: f = diag(lambda)^-1/2 U^T (t - mu), unit variance per channel
    coords = torch.from_numpy(pca.transform(vectors.numpy())) / torch.from_numpy(pca.explained_variance_).sqrt()
    signs = torch.sign((basis * torch.from_numpy(pca.components_).T).sum(0))  # eigenvectors are up to sign
    decoded = decoder(((coords * signs).T.reshape(k, 90, 1))[None].reshape(1, k, 9, 10)).reshape(12, 90).T
    torch.testing.assert_close(decoded, reference, atol=1e-10, rtol=0)
    torch.testing.assert_close(basis.norm(dim=0) ** 2, torch.from_numpy(pca.explained_variance_), atol=1e-10, rtol=1e-10)


def test_teacher_pca_errors():
    with pytest.raises(ValueError, match="k must be"):
        teacher_pca(_maps(), 13)
    with pytest.raises(ValueError, match="at least one"):
        teacher_pca([], 2)


def test_trainer_starts_the_decoder_at_the_training_maps_pca(tmp_path):
    train, test, maps = tiny_scene(num_train=4, num_test=1, size=16, feature_dim=6)
    config = TrainConfig(steps=1, eval_every=0, checkpoint_every=0, sh_degree=0, backend="torch")
    config.decoder.enabled, config.decoder.low_dim = True, 3
    trainer = Trainer(train, config, tmp_path, maps, test)
    mean, basis = teacher_pca([maps[n] for n in train.names], 3)
    torch.testing.assert_close(trainer.field.decoder.conv.bias.detach(), mean)
    torch.testing.assert_close(trainer.field.decoder.conv.weight.detach()[:, :, 0, 0], basis)
    config.decoder.init = "random"
    other = Trainer(train, config, tmp_path / "random", maps, test)
    assert not torch.allclose(other.field.decoder.conv.bias.detach(), mean)


def test_compressed_field_keeps_the_projection_and_renders_its_blend():
    """FeatureField.compressed: features in mean + span(basis) survive exactly; others become their
    orthogonal projection (normal equations); the decoded render is W blend(c) + b = the original
    render of the projected features plus mean (1 - alpha), as blending is linear."""
    from distill3d.fields.field import FeatureField
    from distill3d.gaussians import GaussianInitConfig

    g = torch.Generator().manual_seed(0)
    n, dim, k = 40, 6, 3
    points = torch.randn(n, 3, generator=g) * 0.2 + torch.tensor([0.0, 0.0, 2.0])
    field = FeatureField.from_points(points, None, 0, dim, GaussianInitConfig(sh_degree=0, feature_dim=dim))
    mean, basis = torch.randn(dim, generator=g), torch.randn(dim, k, generator=g)
    inside = mean + torch.randn(n, k, generator=g) @ basis.T
    with torch.no_grad():
        field.gaussians.params["features"].copy_(inside)
    small = field.compressed(mean, basis)
    assert small.feature_dim == k and small.decoder.low_dim == k and small.num_gaussians == n
    torch.testing.assert_close(small.gaussian_features(), inside, atol=1e-4, rtol=1e-4)

    outside = inside + torch.randn(n, dim, generator=g)
    with torch.no_grad():
        field.gaussians.params["features"].copy_(outside)
    small = field.compressed(mean, basis)
    residual = small.gaussian_features() - outside
    torch.testing.assert_close(residual @ basis, torch.zeros(n, k), atol=1e-4, rtol=0)  # orthogonal to the span

    viewmats, Ks = torch.eye(4)[None], torch.tensor([[[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]]])
    with torch.no_grad():
        decoded = small.render(viewmats, Ks, 16, 16, backend="torch")
        field.gaussians.params["features"].copy_(small.gaussian_features())
        full = field.render(viewmats, Ks, 16, 16, backend="torch")
    assert float(full.alpha.min()) < 0.1 and float(full.alpha.max()) > 0.5  # the blend over zero matters
    torch.testing.assert_close(decoded.features, full.features + mean[None, :, None, None] * (1 - full.alpha),
                               atol=1e-4, rtol=1e-4)
