import math

import pytest
import torch

from distillcore.reweight import importance_weights, reweighted_structured_loss


def _example():
    teacher = torch.tensor([[[1.0], [2.0]]], dtype=torch.float64)
    student = torch.zeros(1, 2, 1, dtype=torch.float64, requires_grad=True)
    scores = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64, requires_grad=True)
    return teacher, student, scores


def test_weights_and_loss_against_hand_values():
    teacher, student, scores = _example()
    # softmax([0, ln 3]) = [1/4, 3/4]; w = N * softmax = [0.5, 1.5]
    assert importance_weights(scores, 1.0)[0].tolist() == pytest.approx([0.5, 1.5])
    loss = reweighted_structured_loss(teacher, student, scores, 1.0)
    assert loss.item() == pytest.approx((0.5 * 1.0 + 1.5 * 4.0) / 2, rel=1e-12)
    # T = 2: softmax([0, ln3 / 2]) = [1, sqrt 3] / (1 + sqrt 3)
    r3 = math.sqrt(3.0)
    w = [2 / (1 + r3), 2 * r3 / (1 + r3)]
    loss_t2 = reweighted_structured_loss(teacher, student, scores, 2.0)
    assert loss_t2.item() == pytest.approx((w[0] * 1.0 + w[1] * 4.0) / 2, rel=1e-12)


def test_gradient_against_hand_values_and_scores_are_not_trained():
    teacher, student, scores = _example()
    reweighted_structured_loss(teacher, student, scores, 1.0).backward()
    # d/ds mean(w (t - s)^2) = -2 w (t - s) / (B N C)
    assert student.grad.flatten().tolist() == pytest.approx([-2 * 0.5 * 1 / 2, -2 * 1.5 * 2 / 2])
    assert scores.grad is None


def test_uniform_scores_give_plain_mse_and_the_weights_are_applied():
    teacher, student, scores = torch.randn(2, 5, 3), torch.randn(2, 5, 3), torch.zeros(2, 5)
    mse = (teacher - student).pow(2).mean().item()
    assert reweighted_structured_loss(teacher, student, scores, 1.0).item() == pytest.approx(mse, rel=1e-6)
    # PointDistiller's PointRCNN code computes the weights but never applies them: ours must differ.
    peaked = torch.tensor([[4.0, 0, 0, 0, 0]] * 2)
    assert abs(reweighted_structured_loss(teacher, student, peaked, 1.0).item() - mse) > 1e-3
    assert importance_weights(peaked, 1.0).sum(-1).tolist() == pytest.approx([5.0, 5.0])
