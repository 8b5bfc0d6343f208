import pytest
import torch

from distillcore.feature import feature_distill_loss, resize_to

STUDENT = [[1.0, 2.0], [3.0, 4.0]]
TEACHER = [[0.0, 0.0], [3.0, 0.0]]


@pytest.mark.parametrize(
    "kind, per_row",
    [
        ("l1", [1.5, 2.0]),  # (|1|+|2|)/2, (|0|+|4|)/2
        ("mse", [2.5, 8.0]),  # (1+4)/2, (0+16)/2
        ("cosine", [1.0, 0.4]),  # zero teacher -> cos 0; (3,4).(3,0)/(5*3) = 0.6
    ],
)
def test_feature_loss_rows_against_hand_values(kind, per_row):
    student, teacher = torch.tensor(STUDENT, dtype=torch.float64), torch.tensor(TEACHER, dtype=torch.float64)
    assert feature_distill_loss(student, teacher, kind).item() == pytest.approx(sum(per_row) / 2, rel=1e-12)
    weight = torch.tensor([1.0, 3.0], dtype=torch.float64)
    weighted = feature_distill_loss(student, teacher, kind, weight=weight)
    assert weighted.item() == pytest.approx((per_row[0] + 3 * per_row[1]) / 4, rel=1e-12)
    masked = feature_distill_loss(student, teacher, kind, mask=torch.tensor([False, True]))
    assert masked.item() == pytest.approx(per_row[1], rel=1e-12)


def test_mse_gradient_against_hand_computation():
    student = torch.tensor(STUDENT, dtype=torch.float64, requires_grad=True)
    teacher = torch.tensor(TEACHER, dtype=torch.float64)
    feature_distill_loss(student, teacher, "mse").backward()
    # d/ds mean_{n,c} (s-t)^2 = 2 (s - t) / (N C)
    assert torch.allclose(student.grad, 2 * (student.detach() - teacher) / 4)


@pytest.mark.parametrize("kind", ["l1", "mse", "cosine"])
def test_map_loss_equals_row_loss_and_accepts_both_mask_layouts(kind):
    student, teacher = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    mask = torch.rand(2, 4, 5) > 0.3
    weight = torch.rand(2, 4, 5)
    rows = lambda x: x.permute(0, 2, 3, 1).reshape(-1, 3)  # noqa: E731
    expected = feature_distill_loss(rows(student), rows(teacher), kind, mask=mask.flatten(), weight=weight.flatten())
    got_3d = feature_distill_loss(student, teacher, kind, mask=mask, weight=weight)
    got_4d = feature_distill_loss(student, teacher, kind, mask=mask[:, None], weight=weight[:, None])
    assert got_3d.item() == pytest.approx(expected.item(), rel=1e-5)
    assert got_4d.item() == pytest.approx(expected.item(), rel=1e-5)


def test_plain_l1_equals_the_element_mean():
    student, teacher = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    assert feature_distill_loss(student, teacher).item() == pytest.approx((student - teacher).abs().mean().item(), rel=1e-6)


def test_cosine_gradcheck():
    student = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(5, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s: feature_distill_loss(s, teacher, "cosine"), (student,))


@pytest.mark.parametrize(
    "align_corners, first_row",
    [
        (True, [0.0, 1 / 3, 2 / 3, 1.0]),  # corners pinned: x_src = x_dst (2-1)/(4-1)
        (False, [0.0, 0.25, 0.75, 1.0]),  # x_src = (x_dst + 0.5)/2 - 0.5, clamped at the border
    ],
)
def test_resize_to_bilinear_geometry(align_corners, first_row):
    grid = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    out = resize_to(grid, (4, 4), align_corners=align_corners)
    assert out.shape == (1, 1, 4, 4)
    assert out[0, 0, 0].tolist() == pytest.approx(first_row)
    # the image is x + 2y, so every row is the first plus twice the row's source y
    assert out[0, 0, :, 0].tolist() == pytest.approx([2 * v for v in first_row])


def test_resize_to_same_size_is_identity_and_checks_mode_arguments():
    x = torch.randn(1, 2, 3, 3)
    assert resize_to(x, (3, 3)) is x
    with pytest.raises(ValueError, match="align_corners must be None"):
        resize_to(x, (6, 6), mode="nearest", align_corners=False)
    assert resize_to(x, (6, 6), mode="nearest", align_corners=None).shape == (1, 2, 6, 6)
    with pytest.raises(ValueError, match="size must be two positive integers"):
        resize_to(x, (0, 6))
