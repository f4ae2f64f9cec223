"""The MMD permutation test behind the embedding group's verdict."""

from __future__ import annotations

import numpy as np
import pytest

from drift import statistics as stats
from drift.statistics.mmd import mmd2, mmd_test, rbf_kernel


def _sample(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    return rng.normal(shift, 1.0, size=(n, 8))


def test_the_unbiased_estimate_matches_the_definition() -> None:
    rng = np.random.default_rng(0)
    x, y = _sample(rng, 7), _sample(rng, 5, 0.4)
    kernel, _ = rbf_kernel(np.vstack([x, y]))
    kxx = (kernel[:7, :7].sum() - 7) / (7 * 6)
    kyy = (kernel[7:, 7:].sum() - 5) / (5 * 4)
    assert mmd2(x, y) == pytest.approx(kxx + kyy - 2 * kernel[:7, 7:].mean())


def test_mmd_is_near_zero_on_one_distribution_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(1)
    same = mmd2(_sample(rng, 200), _sample(rng, 200))
    moved = mmd2(_sample(rng, 200), _sample(rng, 200, 0.5))
    assert abs(same) < 0.01 < moved


def test_permutation_p_values_are_uniform_under_the_null() -> None:
    p = np.array(
        [
            mmd_test(_sample(rng, 60), _sample(rng, 30), permutations=200, seed=s).p_value
            for s in range(120)
            for rng in [np.random.default_rng(1000 + s)]
        ]
    )
    # 120 draws: each share within about three standard errors of uniform.
    assert 0.0 <= (p < 0.05).mean() <= 0.11
    assert 0.08 <= (p < 0.25).mean() <= 0.40
    assert 0.35 <= p.mean() <= 0.65


def test_a_shift_gets_the_smallest_p_value_permutations_allow() -> None:
    rng = np.random.default_rng(2)
    got = mmd_test(_sample(rng, 200), _sample(rng, 40, 0.6), permutations=999, seed=0)
    assert got.p_value == pytest.approx(1 / 1000) and got.mmd2 > 0 and got.bandwidth > 0


def test_the_same_seed_gives_the_same_p_value() -> None:
    rng = np.random.default_rng(3)
    x, y = _sample(rng, 50), _sample(rng, 25, 0.1)
    assert mmd_test(x, y, seed=4) == mmd_test(x, y, seed=4)


def test_bad_samples_are_refused_with_their_shape() -> None:
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match=r"current has shape \(1, 8\)"):
        mmd_test(_sample(rng, 10), _sample(rng, 1))
    with pytest.raises(ValueError, match="NaN"):
        mmd_test(_sample(rng, 10), np.full((5, 8), np.nan))
    with pytest.raises(ValueError, match="permutations has value 0"):
        mmd_test(_sample(rng, 10), _sample(rng, 10), permutations=0)


@pytest.mark.parametrize("k", [1, 8, 12, 40])
def test_enough_permutations_for_holm_s_first_step(k: int) -> None:
    floor = 1 / (1 + stats.permutations_for(k, stats.ALPHA))
    assert floor < stats.ALPHA / k
    assert stats.permutations_for(k, stats.ALPHA) >= stats.MIN_PERMUTATIONS
