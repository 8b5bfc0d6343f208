import math

import pytest
import torch
import torch.nn.functional as F

from distillcore.code_assignment import code_similarity, soft_code_assignment_kl

CODEBOOK = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)


def test_code_similarity_hand_values():
    x = torch.tensor([[1.0, 0.0]])
    codebook = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    assert code_similarity(x, codebook, "cosine")[0].tolist() == pytest.approx([1.0, 0.0, -1 / math.sqrt(2)])
    assert code_similarity(x, codebook, "l2")[0].tolist() == pytest.approx([0.0, -5.0, -5.0])


def test_soft_code_assignment_kl_against_hand_computation():
    # cosine sims / tau: teacher [2, 0], student [0, 2] -> p_t = (a, b), p_s = (b, a) with
    # a - b = tanh(1), so KL = a ln(a/b) + b ln(b/a) = (a - b) * 2 = 2 tanh(1).
    teacher = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    student = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    loss = soft_code_assignment_kl(teacher, student, CODEBOOK, temperature=0.5, similarity="cosine")
    assert loss.item() == pytest.approx(2 * math.tanh(1.0), rel=1e-12)
    # negative squared L2: teacher [0, -2], student [-2, 0] (same logits up to a shift) -> same value
    loss_l2 = soft_code_assignment_kl(teacher, student, CODEBOOK, temperature=1.0, similarity="l2")
    assert loss_l2.item() == pytest.approx(2 * math.tanh(1.0), rel=1e-12)


def test_log_target_is_used_correctly_and_the_wrong_use_gives_a_different_value():
    teacher = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    student = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    ours = soft_code_assignment_kl(teacher, student, CODEBOOK, temperature=0.5).item()
    log_p_s = F.log_softmax(code_similarity(student, CODEBOOK) / 0.5, -1)
    log_p_t = F.log_softmax(code_similarity(teacher, CODEBOOK) / 0.5, -1)
    # VQGraph's reference passes probabilities with log_target=True ...
    reference_bug = F.kl_div(log_p_s, log_p_t.exp(), reduction="batchmean", log_target=True).item()
    # ... and the opposite slip passes log-probabilities with log_target=False (log of a negative).
    swapped = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=False).item()
    assert ours == pytest.approx(2 * math.tanh(1.0), rel=1e-12)
    assert abs(reference_bug - ours) > 0.1
    assert math.isnan(swapped)


@pytest.mark.parametrize("similarity", ["cosine", "l2"])
def test_a_student_equal_to_its_teacher_has_zero_loss(similarity):
    teacher = torch.randn(6, 4, dtype=torch.float64)
    codebook = torch.randn(5, 4, dtype=torch.float64)
    loss = soft_code_assignment_kl(teacher, teacher.clone(), codebook, temperature=0.7, similarity=similarity)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)


def test_the_reference_similarity_mismatch_would_not_reach_zero():
    # Scoring the teacher with cosine and the student with -||x - c|| (VQGraph's reference) leaves a
    # perfect student with a positive loss: this is what the shared `similarity` argument prevents.
    teacher = torch.randn(6, 4, dtype=torch.float64)
    codebook = torch.randn(5, 4, dtype=torch.float64)
    log_p_t = F.log_softmax(code_similarity(teacher, codebook, "cosine"), -1)
    log_p_s = F.log_softmax(-torch.cdist(teacher, codebook), -1)
    assert F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True).item() > 0.05


def test_index_selects_teacher_rows_by_node_id():
    teacher = torch.randn(5, 3, dtype=torch.float64)
    codebook = torch.randn(4, 3, dtype=torch.float64)
    index = torch.tensor([4, 0, 2])
    student = torch.randn(3, 3, dtype=torch.float64)
    by_index = soft_code_assignment_kl(teacher, student, codebook, 0.5, "l2", index=index)
    by_rows = soft_code_assignment_kl(teacher[index], student, codebook, 0.5, "l2")
    assert by_index.item() == pytest.approx(by_rows.item(), rel=1e-12)
    # the student rows of nodes 4, 0, 2 equal to the teacher's: zero loss with the right ids only
    perfect = teacher[index].clone()
    assert soft_code_assignment_kl(teacher, perfect, codebook, 0.5, index=index).item() == pytest.approx(0.0, abs=1e-12)
    positional = torch.arange(3)  # the reference's slip: a position in the batch used as a node id
    assert soft_code_assignment_kl(teacher, perfect, codebook, 0.5, index=positional).item() > 1e-3
    with pytest.raises(ValueError, match=r"index must hold node ids in \[0, 5\)"):
        soft_code_assignment_kl(teacher, student, codebook, 0.5, index=torch.tensor([0, 1, 5]))


def test_gradients_reach_the_student_only():
    teacher = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    codebook = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    student = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    soft_code_assignment_kl(teacher, student, codebook, 0.3).backward()
    assert teacher.grad is None and codebook.grad is None
    assert student.grad is not None and bool(student.grad.abs().sum() > 0)
    for similarity in ("cosine", "l2"):
        assert torch.autograd.gradcheck(
            lambda s: soft_code_assignment_kl(teacher, s, codebook, 0.3, similarity), (student,), fast_mode=True
        )
