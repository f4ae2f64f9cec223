"""Temperature scaling and the calibration metrics of action v2's trainer."""

from __future__ import annotations

import numpy as np
import pytest

from model_registry.references.calibration import (
    confidence_summary,
    expected_calibration_error,
    fit_temperature,
    nll,
    softmax,
)


def sampled(seed: int, temperature: float, n: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits / temperature): T is the truth."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, 5))
    p = softmax(logits, temperature)
    y = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    return logits, y


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.0, 4.0])
def test_fitting_recovers_a_known_temperature(true_t: float) -> None:
    logits, y = sampled(7, true_t)
    assert fit_temperature(logits, y) == pytest.approx(true_t, rel=0.06)


def test_fit_is_deterministic_and_minimises_nll() -> None:
    logits, y = sampled(3, 1.7, n=3000)
    t = fit_temperature(logits, y)
    assert fit_temperature(logits, y) == t
    for other in (t * 0.9, t * 1.1):
        assert nll(logits, y, t) < nll(logits, y, other)


def test_ece_of_a_hand_built_example() -> None:
    # 15 bins of width 1/15: 0.9 -> (0.867, 0.933], 0.75 -> (0.733, 0.8], 0.55 -> (0.533, 0.6].
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.55, 0.45], [0.25, 0.75]])
    y = np.array([0, 1, 0, 0])
    # |0.5 - 0.9| * 2/4 + |1 - 0.55| * 1/4 + |0 - 0.75| * 1/4
    assert expected_calibration_error(probs, y) == pytest.approx(0.2 + 0.1125 + 0.1875)
    assert expected_calibration_error(probs[:0], y[:0]) == 0.0
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(perfect, np.array([0, 1])) == 0.0


def test_scaling_a_miscalibrated_model_lowers_its_ece() -> None:
    logits, y = sampled(11, 2.5)  # the model's logits are 2.5x too sharp
    t = fit_temperature(logits[:10_000], y[:10_000])
    before = expected_calibration_error(softmax(logits[10_000:]), y[10_000:])
    after = expected_calibration_error(softmax(logits[10_000:], t), y[10_000:])
    assert after <= before
    assert before > 0.1 and after < 0.03


def test_softmax_is_never_clipped() -> None:
    p = softmax(np.array([[40.0, 0.0, 0.0]]))
    assert p[0, 0] > 0.999999 and p[0, 1] > 0.0
    assert softmax(np.array([[40.0, 0.0, 0.0]]), 20.0)[0, 0] == pytest.approx(
        1 / (1 + 2 * np.exp(-2.0))
    )


def test_confidence_summary() -> None:
    probs = np.array([[0.35, 0.65], [0.45, 0.55], [0.9, 0.1], [0.2, 0.8]])
    s = confidence_summary(probs)
    assert s["frac_below_0.4"] == 0.0
    assert s["frac_below_0.6"] == 0.25
    assert s["frac_below_0.5"] == 0.0
    assert s["conf_max"] == 0.9
    assert s["conf_q50"] == pytest.approx(0.725)
