"""SpeedUpDecoder.cosine_similarity where the decoded vectors are much shorter than the decoder's bias
(a bias close to the decoder's range, pixels whose features nearly cancel it): the folded norm must be as
accurate as decode-then-normalise, measured against a float64 decode."""
import warnings

import torch
import torch.nn.functional as F

from distill3d.fields.decoder import SpeedUpDecoder

LOW_DIM, TEACHER_DIM = 16, 64


def near_cancelling(seed: int, spread: float) -> tuple[SpeedUpDecoder, torch.Tensor]:
    """A decoder with bias ``b = W c + small`` and rows ``f = -c + spread * noise``: ``|W f + b|`` is a few
    hundredths of ``|b|``, so ``f^T W^T W f + 2 f . W^T b + |b|^2`` adds terms of ``|b|^2``'s size that cancel."""
    generator = torch.Generator().manual_seed(seed)
    decoder = SpeedUpDecoder(LOW_DIM, TEACHER_DIM)
    with torch.no_grad():
        weight = torch.randn(TEACHER_DIM, LOW_DIM, generator=generator)
        centre = 3 * torch.randn(LOW_DIM, generator=generator)
        decoder.conv.weight.copy_(weight[:, :, None, None])
        decoder.conv.bias.copy_(weight @ centre + 0.01 * torch.randn(TEACHER_DIM, generator=generator))
    rows = -centre + spread * torch.randn(1000, LOW_DIM, generator=generator)
    return decoder, rows


def test_folded_cosine_keeps_the_accuracy_of_decoding_when_the_bias_dominates():
    for seed, spread in ((0, 1e-2), (1, 3e-3)):
        decoder, rows = near_cancelling(seed, spread)
        queries = torch.randn(3, TEACHER_DIM, generator=torch.Generator().manual_seed(seed + 10))
        weight, bias = decoder.conv.weight[:, :, 0, 0].detach().double(), decoder.conv.bias.detach().double()
        exact = F.normalize(rows.double() @ weight.T + bias, dim=1) @ F.normalize(queries.double(), dim=1).T
        ratio = float(bias.norm() / (rows.double() @ weight.T + bias).norm(dim=1).median())
        assert ratio > 100  # the case is the cancelling one
        with torch.no_grad():
            decoded = F.normalize(decoder.decode_rows(rows), dim=1) @ F.normalize(queries, dim=1).T
            folded = decoder.cosine_similarity(rows, queries)
        decode_error = float((decoded.double() - exact).abs().max())
        folded_error = float((folded.double() - exact).abs().max())
        # expanding the squared norm in float32 lost 1e-3 here (100x decode-then-normalise's error)
        assert folded_error <= 4 * decode_error + 1e-6, (folded_error, decode_error)
        assert float(folded.abs().max()) <= 1 + 1e-6


def test_folded_cosine_needs_no_scalar_readout_of_the_parameters():
    """Under grad mode (the segment CLI, the viewer's threshold slider) no parameter is read out as a
    Python float (a UserWarning per process), and the result stays differentiable in the bias."""
    decoder, rows = near_cancelling(2, 1.0)
    queries = torch.randn(2, TEACHER_DIM, generator=torch.Generator().manual_seed(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        folded = decoder.cosine_similarity(rows, queries)
    (grad,) = torch.autograd.grad(folded.sum(), decoder.conv.bias)
    reference = F.normalize(decoder.decode_rows(rows), dim=1) @ F.normalize(queries, dim=1).T
    (want,) = torch.autograd.grad(reference.sum(), decoder.conv.bias)
    assert torch.allclose(grad, want, rtol=1e-3, atol=1e-4)
