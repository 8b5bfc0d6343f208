import math

import pytest
import torch

from distillcore.quantize import QuantizerConfig, VectorQuantizer


def _quantizer(**overrides):
    return VectorQuantizer(QuantizerConfig(**{"codebook_size": 4, "dim": 3, **overrides}))


def _clustered(centers, n, noise=0.1):
    return centers[torch.randint(0, len(centers), (n,))] + noise * torch.randn(n, centers.shape[1])


@pytest.mark.parametrize("update", ["ema", "grad"])
def test_straight_through_gradient_and_nearest_code(update):
    vq = _quantizer(update=update)
    codebook = vq.codebook.detach().clone()
    x = torch.randn(10, 3, requires_grad=True)
    out = vq(x)
    assert torch.equal(out.indices, torch.cdist(x.detach(), codebook).argmin(-1))
    assert torch.allclose(out.quantized, codebook[out.indices])
    upstream = torch.randn(10, 3)
    (out.quantized * upstream).sum().backward()
    assert torch.allclose(x.grad, upstream)  # the identity gradient of the straight-through estimator


def test_commitment_loss_value_and_gradients_in_ema_mode():
    vq = _quantizer(commitment_weight=0.25)
    codebook = vq.codebook.detach().clone()
    x = torch.randn(8, 3, requires_grad=True)
    out = vq(x)
    chosen = codebook[out.indices]
    expected = 0.25 * ((x.detach() - chosen) ** 2).mean()
    assert out.commit_loss.item() == pytest.approx(expected.item(), rel=1e-6)
    out.commit_loss.backward()
    assert torch.allclose(x.grad, 0.25 * 2 * (x.detach() - chosen) / x.numel(), atol=1e-7)


def test_gradient_mode_adds_the_codebook_term_with_weight_one():
    vq = _quantizer(update="grad", commitment_weight=0.25)
    x = torch.randn(8, 3)
    out = vq(x)
    chosen = vq.codebook.detach()[out.indices]
    sq = ((x - chosen) ** 2).mean().item()
    assert out.commit_loss.item() == pytest.approx(1.25 * sq, rel=1e-6)
    out.commit_loss.backward()
    expected = torch.zeros(4, 3)
    expected.index_add_(0, out.indices, 2 * (chosen - x) / x.numel())
    assert torch.allclose(vq.vq._codebook.embed.grad[0], expected, atol=1e-7)


def test_ema_moves_the_used_code_towards_its_rows_and_leaves_others():
    decay = 0.9
    vq = _quantizer(ema_decay=decay)
    vq.set_codebook(torch.tensor([[0.0, 0, 0], [10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0]]))
    before = vq.codebook.clone()
    x = torch.tensor([[1.0, 1.0, 0.0], [2.0, -1.0, 0.0]])  # both nearest to code 0
    vq(x)
    # set_codebook restarts each code as one row at the code:
    # e0 <- (decay * e0 + (1 - decay) * sum x) / (decay + (1 - decay) * n)
    expected0 = (decay * before[0] + (1 - decay) * x.sum(0)) / (decay + (1 - decay) * 2)
    assert torch.allclose(vq.codebook[0], expected0, atol=1e-3)
    assert torch.norm(vq.codebook[0] - x.mean(0)) < torch.norm(before[0] - x.mean(0))
    assert torch.allclose(vq.codebook[1:], before[1:], atol=1e-3)


def test_eval_mode_does_not_update_and_has_zero_loss():
    vq = _quantizer().eval()
    before = vq.codebook.clone()
    out = vq(torch.randn(8, 3))
    assert torch.equal(vq.codebook, before)
    assert out.commit_loss.item() == 0.0


def test_cosine_codebook_is_unit_norm_and_assigns_by_angle():
    vq = _quantizer(similarity="cosine").eval()
    assert torch.allclose(vq.codebook.norm(dim=-1), torch.ones(4), atol=1e-5)
    x = 5 * torch.randn(16, 3)
    cos = torch.nn.functional.normalize(x, dim=-1) @ vq.codebook.T
    assert torch.equal(vq(x).indices, cos.argmax(-1))


def test_kmeans_init_places_codes_on_the_data():
    centers = torch.tensor([[5.0, 0, 0], [-5.0, 0, 0], [0, 5.0, 0], [0, 0, -5.0]])
    vq = _quantizer(codebook_size=16, kmeans_init=True)
    vq(_clustered(centers, 512))
    distances = torch.cdist(vq.codebook, centers)
    assert bool((distances.min(dim=0).values < 0.5).all())  # every cluster has a code
    assert bool((distances.min(dim=1).values < 1.0).all())  # no code left off the data


def test_usage_statistics_against_hand_values():
    vq = _quantizer().eval()
    assert vq.usage() == {"codes_used": 0, "perplexity": 0.0}
    vq.set_codebook(torch.tensor([[0.0, 0, 0], [10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0]]))
    vq(torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [9.0, 0, 0], [0, 9.0, 0]]))  # codes 0, 0, 1, 2
    usage = vq.usage()
    assert usage["codes_used"] == 3
    # p = (1/2, 1/4, 1/4): H = 1.5 ln 2, perplexity 2^1.5
    assert usage["perplexity"] == pytest.approx(2**1.5, rel=1e-9)
    vq.reset_usage()
    assert vq.usage()["codes_used"] == 0


def _train_and_measure(dead_code_threshold):
    torch.manual_seed(0)
    # Data far from the initial codebook (near the origin): one code wins every row and drifts to
    # the data; the others are never chosen again unless restarted.
    centers = torch.randn(32, 8) + 5.0
    vq = VectorQuantizer(
        QuantizerConfig(codebook_size=32, dim=8, ema_decay=0.9, dead_code_threshold=dead_code_threshold)
    )
    for _ in range(20):
        vq(_clustered(centers, 256))
    vq.eval()
    vq.reset_usage()
    vq(_clustered(centers, 2048))
    return vq.usage()


def test_dead_code_restart_prevents_codebook_collapse():
    collapsed = _train_and_measure(0.0)
    restarted = _train_and_measure(1.0)
    assert collapsed["perplexity"] < 2.0
    assert restarted["perplexity"] > 20.0
    assert restarted["codes_used"] >= 28


def test_codebook_feeds_soft_code_assignment():
    from distillcore.code_assignment import soft_code_assignment_kl

    vq = _quantizer(codebook_size=6, dim=4)
    teacher = torch.randn(5, 4)
    vq(teacher)
    student = torch.randn(5, 4, requires_grad=True)
    loss = soft_code_assignment_kl(teacher, student, vq.codebook, temperature=0.5)
    loss.backward()
    assert math.isfinite(loss.item()) and student.grad is not None


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"codebook_size": 0}, "codebook_size must be a positive integer"),
        ({"similarity": "dot"}, "similarity must be one of"),
        ({"update": "sgd"}, "update must be one of"),
        ({"update": "grad", "similarity": "cosine"}, "cannot learn a cosine codebook"),
        ({"ema_decay": 1.0}, r"ema_decay must be in \[0, 1\)"),
        ({"commitment_weight": -1.0}, "commitment_weight must be >= 0"),
        ({"dead_code_threshold": float("nan")}, "dead_code_threshold must be >= 0"),
    ],
)
def test_bad_config_is_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        _quantizer(**overrides)


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.randn(4, 5), r"x must have shape \[\*, 3\]"),
        (torch.randn(4), r"x must have shape \[\*, 3\]"),
        (torch.zeros(4, 3, dtype=torch.long), "x must be a floating-point tensor"),
        (torch.full((4, 3), float("nan")), "x has 12 non-finite"),
        (torch.zeros(0, 3), "x is empty"),
    ],
)
def test_bad_input_is_rejected(x, message):
    with pytest.raises(ValueError, match=message):
        _quantizer()(x)
