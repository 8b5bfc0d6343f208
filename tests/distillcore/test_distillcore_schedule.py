import math

import pytest

from distillcore.schedule import ExponentialDecayConfig, exponential_decay, linear_warmup, progress_ramp


@pytest.mark.parametrize(
    "step, expected",
    [(0, 1e-2), (50, 1e-3), (100, 1e-4), (25, 1e-2 * 10**-0.5), (200, 1e-4), (-1, 0.0)],
)
def test_exponential_decay_is_log_linear_and_clamped(step, expected):
    assert exponential_decay(step, 1e-2, 1e-4, 100) == pytest.approx(expected, rel=1e-12)


def test_exponential_decay_delay_follows_the_3dgs_sine_ramp():
    # delay_rate = mult + (1 - mult) sin(pi/2 * clip(step / delay, 0, 1))
    lr = lambda step: exponential_decay(step, 1e-2, 1e-4, 100, warmup_steps=10, lr_delay_mult=0.01)  # noqa: E731
    assert lr(0) == pytest.approx(0.01 * 1e-2, rel=1e-12)
    rate_5 = 0.01 + 0.99 * math.sin(math.pi / 4)
    assert lr(5) == pytest.approx(rate_5 * 1e-2 * 10 ** (-2 * 0.05), rel=1e-12)
    assert lr(10) == pytest.approx(1e-2 * 10 ** (-2 * 0.1), rel=1e-12)
    assert lr(50) == pytest.approx(1e-3, rel=1e-12)


def test_exponential_decay_edge_cases_and_config():
    assert exponential_decay(10, 0.0, 0.0, 100) == 0.0
    with pytest.raises(ValueError, match="lr_init and lr_final must both be > 0"):
        exponential_decay(10, 1e-3, 0.0, 100)
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        exponential_decay(10, 1e-3, 1e-4, 0)
    with pytest.raises(ValueError, match="lr_init must be >= 0"):
        exponential_decay(10, float("nan"), 1e-4, 100)
    with pytest.raises(ValueError, match="step must be finite"):
        exponential_decay(float("inf"), 1e-3, 1e-4, 100)
    schedule = ExponentialDecayConfig(lr_init=1.6e-4, lr_final=1.6e-6, max_steps=30_000)
    assert schedule(15_000) == pytest.approx(1.6e-5, rel=1e-12)
    with pytest.raises(ValueError, match="warmup_steps must be a non-negative integer"):
        ExponentialDecayConfig(lr_init=1e-3, lr_final=1e-4, max_steps=10, warmup_steps=-1)


@pytest.mark.parametrize("step, expected", [(0, 0.0), (5, 0.5), (10, 1.0), (20, 1.0)])
def test_linear_warmup(step, expected):
    assert linear_warmup(step, 10) == pytest.approx(expected)


def test_linear_warmup_edge_cases():
    assert linear_warmup(0, 0) == 1.0
    with pytest.raises(ValueError, match="step must be >= 0"):
        linear_warmup(-1, 10)
    with pytest.raises(ValueError, match="warmup_steps must be a non-negative integer"):
        linear_warmup(1, 2.5)


@pytest.mark.parametrize("step, expected", [(0, 0.0), (10, 0.0), (12.5, 0.25), (15, 0.5), (20, 1.0), (30, 1.0)])
def test_progress_ramp(step, expected):
    assert progress_ramp(step, 10, 20) == pytest.approx(expected)


def test_progress_ramp_edge_cases():
    assert progress_ramp(9, 10, 10) == 0.0
    assert progress_ramp(10, 10, 10) == 1.0
    with pytest.raises(ValueError, match="finite start <= end"):
        progress_ramp(5, 20, 10)
