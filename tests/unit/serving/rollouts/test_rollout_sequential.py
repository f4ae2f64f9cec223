"""The sequential statistics: known values, boundaries, the sample floor, the evidence's shape."""

from __future__ import annotations

import math

import numpy as np
import pytest

from serving.rollouts import sequential as seq
from serving.rollouts.sequential import (
    Evidence,
    agreement_cs,
    binom_cdf,
    champion_rate,
    error_hypotheses,
    error_llr,
    error_rate_sprt,
    folded,
    mean_radius,
    quantile_test,
    upper_rank,
    wald_bounds,
)

LOG49 = math.log(49)


def _sprt(
    prior: Evidence | None = None,
    champion: tuple[int, int] = (0, 0),
    challenger: tuple[int, int] = (0, 0),
    *,
    floor: int = 20,
    threshold: float = 0.05,
) -> Evidence:
    return error_rate_sprt(
        prior,
        "error_rate",
        champion=champion,
        challenger=challenger,
        ratio=3.0,
        threshold=threshold,
        alpha=0.02,
        beta=0.02,
        floor=floor,
    )


def test_wald_bounds_for_two_percent_each_way() -> None:
    lower, upper = wald_bounds(0.02, 0.02)
    assert (lower, upper) == (pytest.approx(-LOG49), pytest.approx(LOG49))
    assert wald_bounds(0.05, 0.1) == (
        pytest.approx(math.log(0.1 / 0.95)),
        pytest.approx(math.log(0.9 / 0.05)),
    )


@pytest.mark.parametrize("bad", [0.0, 0.5, -0.1, 1.0])
def test_wald_bounds_refuse_a_level_outside_zero_to_a_half(bad: float) -> None:
    with pytest.raises(ValueError, match=rf"alpha must be in \(0, 0.5\), got {bad!r}"):
        wald_bounds(bad, 0.02)
    with pytest.raises(ValueError, match=rf"beta must be in \(0, 0.5\), got {bad!r}"):
        wald_bounds(0.02, bad)


def test_champion_rate_is_jeffreys_moved_by_standard_errors() -> None:
    assert champion_rate(999, 20, 0.0) == pytest.approx(20.5 / 1000)
    assert champion_rate(999, 20, 0.5) == pytest.approx((20.5 + 0.5 * math.sqrt(20.5)) / 1000)
    assert champion_rate(999, 20, -0.5) == pytest.approx((20.5 - 0.5 * math.sqrt(20.5)) / 1000)
    assert champion_rate(0, 0, 0.0) == 0.5  # nothing seen: capped at a coin flip
    assert champion_rate(1, 0, -5.0) == 1e-6  # never 0: the log likelihood ratio needs p0 > 0


def test_error_hypotheses_read_the_champion_against_each_decision() -> None:
    point = champion_rate(999, 20, 0.0)
    # The shift is CHAMPION_Z standard errors times sqrt(challenger / champion calls): 0.5 here.
    shift = seq.CHAMPION_Z * math.sqrt(111 / 999)
    assert shift == pytest.approx(0.5)
    high, low = champion_rate(999, 20, shift), champion_rate(999, 20, -shift)
    # Fail: H0 is a champion worse than measured, H1 3x the measure.
    assert error_hypotheses(999, 20, 3.0, 0.01, "fail", 111) == (high, pytest.approx(3 * point))
    # Pass: H0 is the measure, H1 3x a champion better than measured.
    assert error_hypotheses(999, 20, 3.0, 0.01, "pass", 111) == (point, pytest.approx(3 * low))
    # The more the challenger has seen next to the champion, the more cautious both are.
    wide = error_hypotheses(999, 20, 3.0, 0.01, "fail", 999)
    assert wide[0] == champion_rate(999, 20, seq.CHAMPION_Z) > high
    # The threshold is bad however clean the champion, and H1 is at least MIN_EXCESS above H0.
    assert error_hypotheses(999, 20, 3.0, 0.2, "fail", 111) == (high, 0.2)
    clean = champion_rate(10_000, 0, 0.0)
    assert error_hypotheses(10_000, 0, 3.0, 0.0, "pass", 0) == (clean, clean + seq.MIN_EXCESS)
    assert error_hypotheses(0, 0, 3.0, 0.0, "fail", 0)[1] == 0.999  # capped below 1


def test_error_hypotheses_refuse_a_ratio_of_one_or_less() -> None:
    with pytest.raises(ValueError, match=r"ratio must be > 1, got 1.0"):
        error_hypotheses(100, 2, 1.0, 0.05, "fail", 10)


def test_error_llr_known_value_and_its_guard() -> None:
    assert error_llr(100, 5, 0.02, 0.06) == pytest.approx(
        5 * math.log(3) + 95 * math.log(0.94 / 0.98)
    )
    assert error_llr(0, 0, 0.02, 0.06) == 0.0
    with pytest.raises(ValueError, match=r"errors must be within 0..requests, got 6 of 5"):
        error_llr(5, 6, 0.02, 0.06)
    with pytest.raises(ValueError, match=r"got -1 of 5"):
        error_llr(5, -1, 0.02, 0.06)


def test_the_sprt_never_decides_below_the_floor_on_either_arm() -> None:
    # Every challenger call failed: overwhelming evidence, but 19 calls are below the floor.
    short = _sprt(champion=(1000, 20), challenger=(19, 19))
    assert short.statistic > 4 * LOG49 and short.decision is None
    assert _sprt(champion=(1000, 20), challenger=(20, 20)).decision == "fail"
    # The champion's arm counts too.
    assert _sprt(champion=(19, 0), challenger=(100, 100)).decision is None
    assert _sprt(champion=(20, 0), challenger=(100, 100)).decision == "fail"


def test_the_sprt_records_counts_statistics_and_boundaries() -> None:
    ev = _sprt(champion=(1000, 20), challenger=(300, 4))
    p0, p1 = error_hypotheses(1000, 20, 3.0, 0.05, "fail", 300)
    q0, q1 = error_hypotheses(1000, 20, 3.0, 0.05, "pass", 300)
    assert ev.model_dump() == {
        "check": "error_rate",
        "test": "sprt",
        "champion_requests": 1000,
        "champion_errors": 20,
        "challenger_requests": 300,
        "challenger_errors": 4,
        "compared": 0,
        "agreement_sum": 0.0,
        "statistic": pytest.approx(error_llr(300, 4, p0, p1)),
        "pass_statistic": pytest.approx(error_llr(300, 4, q0, q1)),
        "pass_boundary": pytest.approx(-LOG49),
        "fail_boundary": pytest.approx(LOG49),
        "decision": "pass",
        "floor": 20,
        "windows": 0,
    }
    # The fail side reads the champion as worse, so it is the more lenient of the two.
    assert ev.statistic < ev.pass_statistic <= ev.pass_boundary


def test_the_sprt_depends_on_the_counts_not_on_how_windows_cut_them() -> None:
    one = _sprt(champion=(900, 18), challenger=(100, 5))
    two = _sprt(_sprt(champion=(400, 8), challenger=(40, 2)), (500, 10), (60, 3))
    assert two.model_dump() == pytest.approx(one.model_dump())


def test_a_pass_lasts_while_the_evidence_holds_and_a_fail_is_final() -> None:
    passed = _sprt(champion=(1000, 20), challenger=(300, 4))
    assert passed.decision == "pass"
    # A worse stretch: neither side decisive any more, so no longer a pass (the step waits).
    held = _sprt(passed, (0, 0), (40, 6))
    assert held.pass_statistic > held.pass_boundary and held.statistic < held.fail_boundary
    assert held.decision is None
    assert _sprt(held, (0, 0), (300, 3)).decision == "pass"  # good traffic: a pass again
    # The challenger then breaks: a fail ...
    broke = _sprt(passed, (0, 0), (100, 30))
    assert broke.decision == "fail"
    # ... which no amount of good traffic undoes.
    assert _sprt(broke, (10_000, 200), (10_000, 0)).decision == "fail"


def test_clean_traffic_on_both_arms_still_passes() -> None:
    """No errors anywhere: H1 is the threshold, so about log(49) / 0.05 clean calls pass."""
    assert _sprt(champion=(1000, 0), challenger=(70, 0)).decision is None
    assert _sprt(champion=(1000, 0), challenger=(80, 0)).decision == "pass"


def test_folding_counts_a_window() -> None:
    ev = _sprt(champion=(100, 2), challenger=(30, 1))
    assert folded(folded(ev)).windows == 2 and folded(ev).statistic == ev.statistic


def test_mean_radius_known_value_and_shape() -> None:
    level = 0.02
    rho = 50 / (2 * math.log(50) + math.log(1 + 2 * math.log(50)))
    v = 100 / 4 + rho
    expected = math.sqrt(2 * v * math.log(math.sqrt(v / rho) / level)) / 100
    assert mean_radius(100, level) == pytest.approx(expected)
    assert mean_radius(100, level) == pytest.approx(0.1691, abs=1e-3)
    assert mean_radius(0, level) == math.inf
    assert mean_radius(400, level) < mean_radius(100, level) < mean_radius(20, level)
    assert mean_radius(100, 0.1) < mean_radius(100, level)
    with pytest.raises(ValueError, match=r"level must be in \(0, 0.5\), got 0.7"):
        mean_radius(10, 0.7)


def _cs(prior: Evidence | None, compared: int, total: float, floor: int = 20) -> Evidence:
    return agreement_cs(
        prior,
        "shadow_agreement",
        compared=compared,
        agreement_sum=total,
        threshold=0.8,
        alpha=0.02,
        beta=0.02,
        floor=floor,
    )


def test_agreement_fails_below_the_lower_boundary_and_passes_above_the_upper_one() -> None:
    r = mean_radius(100, 0.02)
    bad = _cs(None, 100, 100 * (0.8 - r) - 0.01)
    assert (bad.decision, bad.fail_boundary, bad.pass_boundary) == (
        "fail",
        pytest.approx(0.8 - r),
        pytest.approx(0.8 + r),
    )
    assert _cs(None, 100, 100 * (0.8 - r) + 0.01).decision is None  # the fail is strict
    assert _cs(None, 100, 100 * (0.8 + r) + 1e-9).decision == "pass"  # the pass is inclusive
    assert _cs(None, 100, 100 * (0.8 + r) - 0.01).decision is None
    assert _cs(None, 100, 90.0).statistic == pytest.approx(0.9)


def test_an_agreement_threshold_of_zero_is_recorded_not_a_gate() -> None:
    def judged(compared: int) -> Evidence:
        return agreement_cs(
            None,
            "shadow_agreement",
            compared=compared,
            agreement_sum=0.0,  # every comparison disagreed
            threshold=0.0,
            alpha=0.02,
            beta=0.02,
            floor=20,
        )

    assert judged(19).decision is None  # the floor still holds
    assert judged(20).decision == "pass"  # an agreement in [0, 1] is never below 0


def test_agreement_never_decides_below_the_floor_and_adds_windows_up() -> None:
    assert _cs(None, 19, 0.0).decision is None  # 19 disagreements: below the floor
    assert _cs(None, 20, 0.0).decision == "fail"
    first = _cs(None, 150, 150.0)
    assert first.decision == "pass"
    both = _cs(first, 50, 25.0)
    assert (both.compared, both.agreement_sum, both.statistic) == (200, 175.0, 0.875)
    assert both.decision is None  # no longer sure enough: a pass lasts while it holds
    assert both.floor == 20
    assert _cs(both, 800, 0.0).decision == "fail"
    assert _cs(_cs(both, 800, 0.0), 10_000, 10_000.0).decision == "fail"  # final


def test_binomial_cdf_known_values() -> None:
    assert binom_cdf(2, 10, 0.5) == pytest.approx(56 / 1024)
    assert binom_cdf(-1, 10, 0.5) == 0.0
    assert binom_cdf(10, 10, 0.3) == 1.0
    assert binom_cdf(3, 10, 0.0) == 1.0
    assert binom_cdf(3, 10, 1.0) == 0.0
    assert binom_cdf(0, 5, 0.2) == pytest.approx(0.8**5)


def test_upper_rank_is_the_smallest_order_statistic_above_the_quantile() -> None:
    # P(Bin(10, .5) <= 7) = 0.945 < 0.95 <= P(Bin(10, .5) <= 8) = 0.989: rank 9.
    assert upper_rank(10, 0.5, 0.05) == 9
    assert upper_rank(10, 0.9, 0.05) is None  # even the maximum is not sure enough
    assert upper_rank(0, 0.5, 0.05) is None
    assert upper_rank(600, 0.99, 0.0033) is not None and upper_rank(500, 0.99, 0.0033) is None


def test_quantile_test_rejects_a_slower_challenger_only() -> None:
    champion = [float(x) for x in range(1, 201)]
    same = quantile_test(champion, champion, 0.5, 2.0, 0.01)
    assert same is not None and not same.rejected and same.exceed == 0
    assert same.observed_ratio == 1.0 and same.samples == 200
    slow = quantile_test(champion, [3 * x for x in champion], 0.5, 2.0, 0.01)
    assert slow is not None and slow.rejected and slow.observed_ratio == 3.0
    assert slow.p_value < 0.005
    assert quantile_test(champion, champion[:5], 0.5, 2.0, 0.01) is None  # too few to reject
    assert quantile_test([0.0] * 200, champion, 0.5, 2.0, 0.01) is None  # no ratio to 0 ms


def test_evidence_round_trips_and_refuses_negative_counts() -> None:
    ev = _sprt(champion=(100, 2), challenger=(30, 1))
    assert Evidence.model_validate(ev.model_dump()) == ev
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        Evidence(check="error_rate", test="sprt", challenger_requests=-1)


def test_agreement_error_rates_hold_over_a_whole_stream() -> None:
    """Seeds 0..199, 40 windows of 25 agreements each, judged after every window: a mean at the
    threshold is failed, and a mean below it passed, in at most 2% of the streams."""
    wrong_fails = wrong_passes = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        for mean, bad_outcome in ((0.8, "fail"), (0.7, "pass")):
            ev = None
            values = rng.beta(8 * mean, 8 * (1 - mean), size=(40, 25))
            for window in values:
                ev = _cs(ev, 25, float(window.sum()))
                if ev.decision is not None:
                    break
            assert ev is not None
            if ev.decision == bad_outcome == "fail":
                wrong_fails += 1
            elif ev.decision == bad_outcome == "pass":
                wrong_passes += 1
    assert wrong_fails / 200 <= 0.02 and wrong_passes / 200 <= 0.02
