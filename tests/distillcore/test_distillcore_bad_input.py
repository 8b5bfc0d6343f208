"""Every public loss rejects bad input with a ValueError/TypeError naming the argument."""
import pytest
import torch

from distillcore.code_assignment import code_similarity, soft_code_assignment_kl
from distillcore.feature import feature_distill_loss, resize_to
from distillcore.image import image_loss, ssim
from distillcore.kd import kd_kl_loss
from distillcore.reweight import importance_weights, reweighted_structured_loss

NAN = float("nan")
INF = float("inf")


def _with(value, index=(0, 0)):
    out = torch.randn(4, 3)
    out[index] = value
    return out


R = torch.randn  # short for the table below
GOOD_MAP = torch.rand(1, 3, 12, 12)

CASES = [
    # kd_kl_loss
    (lambda: kd_kl_loss(R(4), R(4, 3)), "student_logits must have 2 dimensions"),
    (lambda: kd_kl_loss(R(4, 3), torch.ones(4, 3, dtype=torch.long)), "teacher_logits must be a floating-point"),
    (lambda: kd_kl_loss(_with(NAN), R(4, 3)), "student_logits has 1 non-finite"),
    (lambda: kd_kl_loss(R(4, 3), _with(INF)), "teacher_logits has 1 non-finite"),
    (lambda: kd_kl_loss(R(0, 3), R(0, 3)), "student_logits is empty"),
    (lambda: kd_kl_loss(R(4, 3), R(5, 3)), r"student_logits.shape\[0\]=4, teacher_logits.shape\[0\]=5"),
    (lambda: kd_kl_loss(R(4, 3), R(4, 2)), "the number of classes K"),
    (lambda: kd_kl_loss(R(4, 3), R(4, 3), 0.0), "temperature must be > 0"),
    (lambda: kd_kl_loss(R(4, 3), R(4, 3), mask=torch.ones(4)), "mask must have dtype torch.bool"),
    (lambda: kd_kl_loss(R(4, 3), R(4, 3), mask=torch.ones(3, dtype=torch.bool)), r"mask must have shape \[4\]"),
    (lambda: kd_kl_loss(R(4, 3), R(4, 3), weight=-torch.ones(4)), "weight must be >= 0"),
    (lambda: kd_kl_loss(R(4, 3), R(4, 3), weight=torch.full((4,), NAN)), "weight has 4 non-finite"),
    (lambda: kd_kl_loss(R(4, 3).tolist(), R(4, 3)), "student_logits must be a torch.Tensor"),
    # feature_distill_loss / resize_to
    (lambda: feature_distill_loss(R(2, 3, 4, 4), R(2, 3, 5, 5)), "resize the student map"),
    (lambda: feature_distill_loss(R(2, 3, 4), R(2, 3, 4)), "student must have 2 or 4 dimensions"),
    (lambda: feature_distill_loss(R(4, 3), _with(NAN)), "teacher has 1 non-finite"),
    (lambda: feature_distill_loss(R(0, 3), R(0, 3)), "student is empty"),
    (lambda: feature_distill_loss(R(4, 3), R(4, 3), "huber"), "kind must be one of"),
    (lambda: feature_distill_loss(R(2, 3, 4, 4), R(2, 3, 4, 4), mask=torch.ones(2, 2, 4, 4, dtype=torch.bool)),
     r"mask must have shape \[B, 1, H, W\] or \[B, H, W\]"),
    (lambda: feature_distill_loss(R(2, 3, 4, 4), R(2, 3, 4, 4), weight=R(2, 4, 5).abs()), r"weight must have shape \[2, 4, 4\]"),
    (lambda: feature_distill_loss(R(2, 3, 4, 4), R(2, 3, 4, 4), mask=[[True]]), "mask must be a torch.Tensor"),
    (lambda: resize_to(R(3, 4, 4), (8, 8)), "student_map must have 4 dimensions"),
    (lambda: resize_to(R(1, 1, 2, 2), 8), "size must be two positive integers"),
    (lambda: resize_to(torch.full((1, 1, 2, 2), INF), (4, 4)), "student_map has 4 non-finite"),
    (lambda: resize_to(R(1, 1, 2, 2), (4, 4), mode="linear"), "mode must be one of"),
    (lambda: resize_to(R(1, 1, 2, 2), (4, 4), align_corners=None), "align_corners must be True or False"),
    # ssim / image_loss
    (lambda: ssim(R(3, 12, 12), R(3, 12, 12)), "pred must have 4 dimensions"),
    (lambda: ssim(GOOD_MAP, torch.rand(1, 3, 12, 13)), "pred and target must have the same shape"),
    (lambda: ssim(GOOD_MAP, torch.full((1, 3, 12, 12), NAN)), "target has 432 non-finite"),
    (lambda: ssim(GOOD_MAP, GOOD_MAP, data_range=0.0), "data_range must be > 0"),
    (lambda: ssim(GOOD_MAP, GOOD_MAP, sigma=-1.0), "sigma must be > 0"),
    (lambda: ssim(GOOD_MAP, GOOD_MAP, padding="reflect"), "padding must be one of"),
    (lambda: image_loss(torch.ones(1, 3, 12, 12, dtype=torch.uint8), GOOD_MAP), "pred must be a floating-point"),
    (lambda: image_loss(torch.rand(0, 3, 12, 12), torch.rand(0, 3, 12, 12)), "pred is empty"),
    # code_similarity / soft_code_assignment_kl
    (lambda: code_similarity(R(4, 3), R(5, 2)), r"x.shape\[1\]=3, codebook.shape\[1\]=2"),
    (lambda: code_similarity(R(4, 3), R(5, 3), "dot"), "similarity must be one of"),
    (lambda: code_similarity(R(4, 3), torch.full((5, 3), NAN)), "codebook has 15 non-finite"),
    (lambda: soft_code_assignment_kl(R(4, 3), R(4, 3), R(5, 3), 0.0), "temperature must be > 0"),
    (lambda: soft_code_assignment_kl(R(4, 3), R(2, 3), R(5, 3), 1.0), "pass index= to map student rows"),
    (lambda: soft_code_assignment_kl(R(4, 3), R(2, 3), R(5, 3), 1.0, index=torch.tensor([0.0, 1.0])),
     "index must have dtype"),
    (lambda: soft_code_assignment_kl(R(4, 3), R(2, 3), R(5, 3), 1.0, index=torch.tensor([0, 1, 2])),
     r"index must have shape \[2\]"),
    (lambda: soft_code_assignment_kl(R(4, 3), R(2, 3), R(5, 3), 1.0, index=torch.tensor([0, -1])), "index must hold node ids"),
    (lambda: soft_code_assignment_kl(_with(INF), R(4, 3), R(5, 3), 1.0), "teacher_emb has 1 non-finite"),
    (lambda: soft_code_assignment_kl(R(4, 3), R(0, 3), R(5, 3), 1.0, index=torch.zeros(0, dtype=torch.long)),
     "student_emb is empty"),
    (lambda: soft_code_assignment_kl(R(4, 3), R(4, 3), R(0, 3), 1.0), "codebook is empty"),
    # reweighted_structured_loss / importance_weights
    (lambda: reweighted_structured_loss(R(2, 5, 3), R(2, 5, 4), R(2, 5), 1.0), "teacher and student must have the same shape"),
    (lambda: reweighted_structured_loss(R(2, 5), R(2, 5), R(2, 5), 1.0), "teacher must have 3 dimensions"),
    (lambda: reweighted_structured_loss(R(2, 5, 3), R(2, 5, 3), R(2, 4), 1.0), r"scores must have shape \[2, 5\]"),
    (lambda: reweighted_structured_loss(R(2, 5, 3), R(2, 5, 3), torch.full((2, 5), NAN), 1.0), "scores has 10 non-finite"),
    (lambda: reweighted_structured_loss(R(2, 5, 3), R(2, 5, 3), R(2, 5), -1.0), "temperature must be > 0"),
    (lambda: reweighted_structured_loss(R(2, 0, 3), R(2, 0, 3), R(2, 0), 1.0), "teacher is empty"),
    (lambda: importance_weights(torch.zeros(2, 5, dtype=torch.long), 1.0), "scores must be a floating-point"),
]


@pytest.mark.parametrize("call, message", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_bad_input_raises_a_clear_error(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_all_finite_equals_the_elementwise_test(dtype):
    from distillcore.checks import all_finite

    big = torch.finfo(dtype).max
    cases = {"finite": torch.randn(1000, dtype=dtype), "nan": torch.tensor([1.0, NAN, 2.0], dtype=dtype),
             "inf": torch.tensor([INF, 1.0], dtype=dtype), "-inf": torch.tensor([-INF], dtype=dtype),
             "inf - inf": torch.tensor([INF, -INF], dtype=dtype),
             "finite values whose sum overflows": torch.tensor([big, big, big], dtype=dtype)}
    for name, x in cases.items():
        assert all_finite(x) == bool(torch.isfinite(x).all()), name
