import math

import pytest
import torch
import torch.nn.functional as F

from distillcore.kd import kd_kl_loss, kl_per_row


def _softmax(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def _kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kd_value_and_gradient_match_hand_computation(temperature):
    student = torch.tensor([[0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    teacher = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)
    p_t = _softmax([math.log(3.0) / temperature, 0.0])
    p_s = [0.5, 0.5]

    loss = kd_kl_loss(student, teacher, temperature)
    loss.backward()

    assert loss.item() == pytest.approx(temperature**2 * _kl(p_t, p_s), rel=1e-12)
    # d/ds [T^2 KL(p_t || softmax(s/T))] = T (p_s - p_t)
    expected_grad = [temperature * (ps - pt) for ps, pt in zip(p_s, p_t)]
    assert student.grad[0].tolist() == pytest.approx(expected_grad, rel=1e-12)


def test_kd_mask_and_weight_give_the_weighted_mean_over_selected_rows():
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, -5.0]], dtype=torch.float64)
    teacher = torch.tensor([[math.log(3.0), 0.0], [0.0, 1.0], [-5.0, 5.0]], dtype=torch.float64)
    kl = [_kl(_softmax(t.tolist()), _softmax(s.tolist())) for s, t in zip(student, teacher)]
    mask = torch.tensor([True, True, False])
    weight = torch.tensor([1.0, 3.0, 100.0], dtype=torch.float64)

    loss = kd_kl_loss(student, teacher, mask=mask, weight=weight)

    assert loss.item() == pytest.approx((1.0 * kl[0] + 3.0 * kl[1]) / 4.0, rel=1e-12)
    assert kd_kl_loss(student, teacher).item() == pytest.approx(sum(kl) / 3.0, rel=1e-12)


def test_kd_on_log_probabilities_matches_logits_at_the_same_temperature():
    student = torch.randn(6, 5, dtype=torch.float64)
    teacher = torch.randn(6, 5, dtype=torch.float64)
    temperature = 3.0
    from_logits = kd_kl_loss(student, teacher, temperature)
    from_log_probs = kd_kl_loss(
        F.log_softmax(student / temperature, -1), F.log_softmax(teacher / temperature, -1), temperature, log_probs=True
    )
    assert from_log_probs.item() == pytest.approx(from_logits.item(), rel=1e-12)


def test_kd_rejects_unnormalised_log_probabilities():
    logits = torch.randn(3, 4) + 2.0
    with pytest.raises(ValueError, match="student_logits must hold log-probabilities"):
        kd_kl_loss(logits, F.log_softmax(logits, -1), log_probs=True)


def test_kd_with_no_selected_row_is_zero_with_a_gradient_path():
    student = torch.randn(3, 4, requires_grad=True)
    loss = kd_kl_loss(student, torch.randn(3, 4), 2.0, mask=torch.zeros(3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(student.grad, torch.zeros(3, 4))


def test_kd_gradcheck():
    student = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.rand(4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s, t: kd_kl_loss(s, t, 2.5, weight=weight), (student, teacher))


def test_kl_per_row_is_kl_of_target_from_input():
    p, q = [0.7, 0.2, 0.1], [0.2, 0.5, 0.3]
    value = kl_per_row(torch.tensor([q]).log(), torch.tensor([p]).log())
    assert value.item() == pytest.approx(_kl(p, q), rel=1e-6)
