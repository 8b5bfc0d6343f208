"""Decoder-field queries given a map of the wrong width (e.g. an already decoded map): one clear
ValueError naming the features, from every scoring entry point."""
import pytest
import torch

from distill3d.fields.decoder import SpeedUpDecoder
from distill3d.query import nearest_prototype, similarity_map, threshold_mask


def test_a_decoded_map_given_with_its_decoder_is_refused_clearly():
    decoder = SpeedUpDecoder(6, 40)
    decoded = torch.randn(40, 3, 4)
    with pytest.raises(ValueError, match=r"features must have shape \[6, \*, \*\]"):
        nearest_prototype(decoded, torch.randn(2, 40), decoder)
    with pytest.raises(ValueError, match="features"):
        similarity_map(decoded, torch.randn(40), decoder)
    with pytest.raises(ValueError, match="features"):
        threshold_mask(decoded, torch.randn(40), 0.5, decoder)
    # the right width scores: one label per pixel
    labels = nearest_prototype(torch.randn(6, 3, 4), torch.randn(2, 40), decoder)
    assert labels.shape == (3, 4) and int(labels.max()) <= 1
