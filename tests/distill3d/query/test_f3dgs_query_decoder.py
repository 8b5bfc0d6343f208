"""Queries on a decoder field's rendered D_low maps, scored without decoding, against decode-then-score."""
import pytest
import torch
import torch.nn.functional as F

from distill3d.fields.decoder import SpeedUpDecoder
from distill3d.query import (nearest_prototype, prototypes_from_views, segmentation_miou, similarity_map,
                             threshold_mask)

LOW_DIM, TEACHER_DIM = 6, 40


def make_decoder(generator: torch.Generator, bias_scale: float = 3.0) -> SpeedUpDecoder:
    """A decoder whose bias dominates the decoded vectors (as a teacher's mean does): the squared norm's
    expansion then adds large terms that cancel, the case the folded formula must survive."""
    decoder = SpeedUpDecoder(LOW_DIM, TEACHER_DIM)
    with torch.no_grad():
        decoder.conv.weight.copy_(torch.randn(TEACHER_DIM, LOW_DIM, 1, 1, generator=generator))
        decoder.conv.bias.copy_(bias_scale * torch.randn(TEACHER_DIM, generator=generator))
    return decoder


def decode(decoder: SpeedUpDecoder, low: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return decoder(low[None])[0]


def test_cosine_similarity_equals_decode_then_cosine():
    generator = torch.Generator().manual_seed(0)
    decoder = make_decoder(generator)
    rows = torch.randn(500, LOW_DIM, generator=generator)
    queries = torch.randn(7, TEACHER_DIM, generator=generator)
    with torch.no_grad():
        decoded = decoder.decode_rows(rows)
        expected = F.normalize(decoded, dim=1) @ F.normalize(queries, dim=1).T
        folded = decoder.cosine_similarity(rows, queries)
        assert torch.allclose(folded, expected, atol=2e-6)
        # a query equal to a decoded row scores 1 there (analytic)
        assert torch.allclose(decoder.cosine_similarity(rows[:3], decoded[:3]).diagonal(), torch.ones(3), atol=1e-6)
    with pytest.raises(ValueError, match="queries"):
        decoder.cosine_similarity(rows, torch.randn(2, LOW_DIM))


def test_masks_and_labels_equal_those_of_the_decoded_map():
    generator = torch.Generator().manual_seed(1)
    decoder = make_decoder(generator)
    low = torch.randn(LOW_DIM, 12, 16, generator=generator)
    decoded = decode(decoder, low)
    query = decoded[:, 3, 5].clone()
    with torch.no_grad():
        assert torch.allclose(similarity_map(low, query, decoder), similarity_map(decoded, query), atol=2e-6)
        for threshold in (0.2, 0.6, 0.9):
            assert torch.equal(threshold_mask(low, query, threshold, decoder), threshold_mask(decoded, query, threshold))
        prototypes = torch.randn(5, TEACHER_DIM, generator=generator)
        assert torch.equal(nearest_prototype(low, prototypes, decoder), nearest_prototype(decoded, prototypes))


def test_miou_of_coarse_low_maps_equals_that_of_the_decoded_maps():
    """Prototypes (mask-means in D_low, lifted) and the bilinear upsampling both commute with the decode."""
    generator = torch.Generator().manual_seed(2)
    decoder = make_decoder(generator, bias_scale=1.0)
    directions = torch.randn(3, LOW_DIM, generator=generator)
    labels = (torch.arange(24) // 6 % 3).expand(16, 24).clone()  # vertical stripes 6 pixels wide
    fine = directions[labels].permute(2, 0, 1) + 1.5 * torch.randn(LOW_DIM, 16, 24, generator=generator)
    coarse = F.avg_pool2d(fine[None], 4)[0]  # a map at a quarter of the mask grid, upsampled before scoring
    with torch.no_grad():
        assert torch.allclose(prototypes_from_views([fine], [labels], 3, decoder),
                              prototypes_from_views([decode(decoder, fine)], [labels], 3), atol=1e-5)
        folded = segmentation_miou([fine], [labels], [coarse], [labels], 3, decoder)
        decoded = segmentation_miou([decode(decoder, fine)], [labels], [decode(decoder, coarse)], [labels], 3)
    assert folded == decoded
    assert 0.5 < folded < 1.0  # the noise and the coarse grid cost some pixels: the case is not trivial


def test_miou_command_on_a_decoder_field_scores_the_decoded_renders(tmp_path, capsys):
    """`distill3d query miou` renders a decoder field's D_low maps and scores them without decoding: the
    number it prints is the mIoU of the decoded renders."""
    import json

    from distill3d.cli import main
    from distill3d.data import default_scene_dir, load_scene
    from distill3d.fields.field import FeatureField
    from distill3d.gaussians import GaussianInitConfig, Gaussians

    generator = torch.Generator().manual_seed(3)
    train, test = (load_scene(default_scene_dir(), split).downsample(4) for split in ("train", "test"))
    points = 0.6 * torch.randn(300, 3, generator=generator)  # around the origin, where the cameras look
    config = GaussianInitConfig(sh_degree=0, feature_dim=LOW_DIM)
    field = FeatureField(Gaussians.from_points(points, torch.rand(300, 3, generator=generator), config),
                         TEACHER_DIM, LOW_DIM)
    with torch.no_grad():
        field.gaussians.params["features"].copy_(torch.randn(300, LOW_DIM, generator=generator))
    field.decoder.load_state_dict(make_decoder(generator).state_dict())
    field.save(tmp_path / "field.ply")
    assert main(["query", "miou", str(tmp_path / "field.ply"), "--scene", str(default_scene_dir()),
                 "--downsample", "4", "--backend", "torch"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    def decoded(scene, i):
        with torch.no_grad():
            return field.render(scene.viewmats[i:i + 1], scene.Ks[i:i + 1], scene.width, scene.height,
                                background=scene.background, backend="torch").features[0]
    reference = list(range(0, train.num_views, 4))
    num_classes = int(max(train.masks.max(), test.masks.max())) + 1
    expected = segmentation_miou([decoded(train, i) for i in reference], [train.masks[i] for i in reference],
                                 [decoded(test, i) for i in range(test.num_views)], list(test.masks), num_classes)
    assert printed["miou"] == pytest.approx(expected, abs=1e-9)
