"""The sequential statistics at their edges: exact boundaries, empty arms, the smallest samples."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from serving.rollouts import sequential as seq
from serving.rollouts.sequential import (
    CHAMPION_Z,
    FAIL,
    PASS,
    Evidence,
    agreement_cs,
    binom_cdf,
    champion_rate,
    error_hypotheses,
    error_rate_sprt,
    mean_radius,
    quantile_test,
    upper_rank,
    wald_bounds,
    windows_sprt,
)

A = B = 0.02


def test_a_statistic_exactly_on_a_boundary_decides() -> None:
    lower, upper = wald_bounds(A, B)
    blank = Evidence(check="x", test="sprt")
    step = seq._wald_step
    assert step(blank, {}, upper, 0.0, A, B, ready=True, floor=0).decision == FAIL
    assert step(blank, {}, 0.0, lower, A, B, ready=True, floor=0).decision == PASS
    assert step(blank, {}, upper, lower, A, B, ready=False, floor=9).decision is None


def _first_window(champion: tuple[int, int], challenger: tuple[int, int]) -> Evidence:
    """error_rate's evidence after one window (ratio 3, threshold 5 %, no floor)."""
    return error_rate_sprt(
        None,
        "error_rate",
        champion=champion,
        challenger=challenger,
        ratio=3.0,
        threshold=0.05,
        alpha=A,
        beta=B,
        floor=0,
    )


def test_an_arm_without_calls_leaves_both_statistics_at_zero() -> None:
    for champion, challenger in (((0, 0), (5, 0)), ((50, 1), (0, 0))):
        ev = _first_window(champion, challenger)
        assert (ev.statistic, ev.pass_statistic) == (0.0, 0.0)


@pytest.mark.parametrize(("champion", "challenger"), [((1, 0), (5, 0)), ((100, 2), (1, 0))])
def test_one_call_on_an_arm_is_already_evidence(
    champion: tuple[int, int], challenger: tuple[int, int]
) -> None:
    ev = _first_window(champion, challenger)
    assert ev.statistic < 0 and ev.pass_statistic < 0


def test_one_champion_call_weighs_the_challenger_s_by_the_full_ratio() -> None:
    p0, _ = error_hypotheses(1, 0, 3.0, 0.05, FAIL, 4)
    assert p0 == champion_rate(1, 0, CHAMPION_Z * 2.0)


def test_any_ratio_above_one_is_a_hypothesis() -> None:
    p0, p1 = error_hypotheses(1000, 20, 1.5, 0.0, PASS, 100)
    assert p1 > p0
    with pytest.raises(ValueError, match="ratio must be > 1"):
        error_hypotheses(1000, 20, 1.0, 0.0, PASS, 100)


def test_a_champion_failing_most_calls_is_read_at_most_at_one_half() -> None:
    assert champion_rate(10, 9, 0.0) == 0.5


def test_a_binomial_cdf_never_exceeds_one() -> None:
    # Summed in floating point, these terms come to 1.0000000000000002.
    assert sum(seq._binom_pmfs(10, 0.01)[:10]) > 1.0
    assert binom_cdf(9, 10, 0.01) == 1.0


def test_nearest_rank_quantiles() -> None:
    ordered = [float(i) for i in range(1, 11)]
    assert seq._nearest_rank(ordered, 0.5) == 5.0
    assert seq._nearest_rank(ordered, 0.05) == 1.0
    assert seq._nearest_rank(ordered, 1.0) == 10.0


def test_a_rank_is_found_when_its_coverage_is_exactly_the_level() -> None:
    assert upper_rank(1, 0.5, 0.5) == 1  # P(Bin(1, 1/2) <= 0) = 1/2 = 1 - level
    assert upper_rank(0, 0.5, 0.5) is None


def test_the_agreement_sequence_of_no_comparisons_is_empty() -> None:
    ev = agreement_cs(
        None,
        "shadow_agreement",
        compared=0,
        agreement_sum=0.0,
        threshold=0.8,
        alpha=A,
        beta=B,
        floor=0,
    )
    assert ev.statistic == 0.0 and ev.pass_statistic == 0.0


def test_the_agreement_pass_statistic_is_the_mean() -> None:
    ev = agreement_cs(
        None,
        "shadow_agreement",
        compared=10,
        agreement_sum=9.0,
        threshold=0.5,
        alpha=A,
        beta=B,
        floor=99,
    )
    assert ev.pass_statistic == pytest.approx(0.9) and ev.decision is None


def test_an_agreement_mean_exactly_on_a_boundary() -> None:
    n = 100
    # The lower bound exactly at the threshold passes ...
    at_pass = 1.0 - mean_radius(n, B)
    assert at_pass + mean_radius(n, B) == 1.0
    ev = agreement_cs(
        None, "a", compared=n, agreement_sum=float(n), threshold=at_pass, alpha=A, beta=B, floor=1
    )
    assert ev.decision == PASS
    # ... the upper bound exactly at the threshold does not fail.
    at_fail = mean_radius(n, A)
    ev = agreement_cs(
        None, "a", compared=n, agreement_sum=0.0, threshold=at_fail, alpha=A, beta=B, floor=1
    )
    assert ev.fail_boundary == 0.0 and ev.decision is None


def test_one_sample_has_a_finite_radius() -> None:
    assert math.isfinite(mean_radius(1, A)) and mean_radius(0, A) == math.inf


def test_a_window_sprt_without_windows_is_at_zero() -> None:
    ev = windows_sprt(None, "d", judged=0, failed=0, p0=0.02, p1=0.9, alpha=A, beta=B)
    assert ev.statistic == 0.0 and ev.decision is None


def test_one_window_can_decide_when_it_is_evidence_enough() -> None:
    ev = windows_sprt(None, "d", judged=1, failed=1, p0=0.01, p1=0.9, alpha=A, beta=B)
    assert ev.decision == FAIL and ev.floor == 1 and ev.statistic == pytest.approx(math.log(90))


# --- the latency quantile test ------------------------------------------------------------


def test_a_quantile_test_reads_its_bound_and_p_value_as_documented() -> None:
    champion = [float(i) for i in range(1, 201)]
    challenger = [float(x) for x in range(100, 220, 2)]
    q, level = 0.9, 0.02
    got = quantile_test(champion, challenger, q, 1.0, level)
    assert got is not None
    rank = upper_rank(200, q, level / 2)
    assert rank is not None and got.champion_bound_ms == champion[rank - 1]
    exceed = sum(1 for x in challenger if x > got.champion_bound_ms)
    assert got.exceed == exceed > 1
    assert got.p_value == pytest.approx(stats.binom.sf(exceed - 1, len(challenger), 1 - q))


def test_a_challenger_at_exactly_the_ratio_does_not_exceed_it() -> None:
    got = quantile_test([10.0] * 100, [20.0] * 30, 0.5, 2.0, 0.02)
    assert got is not None and got.exceed == 0 and not got.rejected


def test_sub_millisecond_latencies_are_compared() -> None:
    got = quantile_test([0.5] * 100, [0.4] * 30, 0.5, 2.0, 0.02)
    assert got is not None and got.observed_ratio == pytest.approx(0.8)


def test_a_single_challenger_sample_is_tested_where_it_can_reject() -> None:
    got = quantile_test([float(i) for i in range(1, 401)], [1.0], 0.99, 2.0, 0.05)
    assert got is not None and got.samples == 1


def test_samples_that_could_never_reject_say_nothing_even_at_the_boundary() -> None:
    # (1 - q) ** n == level / 2 exactly: the smallest p-value reachable is not below it.
    assert quantile_test([float(i) for i in range(1, 101)], [5.0], 0.5, 1.0, 1.0) is None


def test_a_champion_with_one_call_is_read_with_the_full_shift() -> None:
    """One champion call (it failed), one challenger call: the pass side reads the champion
    ``CHAMPION_Z * sqrt(1 / 1)`` standard errors better, which floors its rate; with a shift
    of ``sqrt(1 / 2)`` it would read 0.1, and a ratio of 10 would make H1 0.999."""
    p0, p1 = error_hypotheses(1, 1, 10.0, 0.05, PASS, 1)
    assert (p0, p1) == (0.5, pytest.approx(0.51))
