"""Rollout verdicts on seeded synthetic traffic (seeds 0..199, none picked by hand).

The controller's own classes decide: the state machine's ``tick`` and the checks, fed window by
window (``load_tests.rollout_simulation``). A challenger equal to the champion (2% errors) must
rarely be rolled back, one at 3x its error rate must be caught, and the sequential design must
get there on fewer requests than the fixed window, with error rates no worse.
"""

from __future__ import annotations

import pytest

from load_tests.rollout_simulation import (
    BAD_RATE,
    BASE_RATE,
    Summary,
    design,
    simulate,
    summarise,
)

ROLLOUTS = 200


@pytest.fixture(scope="module")
def sequential() -> Summary:
    return summarise("sequential", ROLLOUTS)


@pytest.fixture(scope="module")
def window() -> Summary:
    return summarise("window-60s", ROLLOUTS)


def test_an_equal_challenger_is_wrongly_rolled_back_in_at_most_5_percent(
    sequential: Summary,
) -> None:
    assert sequential.wrong_rollbacks <= 0.05, sequential


def test_a_challenger_at_3x_the_error_rate_is_caught_in_at_least_95_percent(
    sequential: Summary,
) -> None:
    assert sequential.caught >= 0.95, sequential


def test_sequential_needs_fewer_requests_than_the_fixed_window_at_no_worse_error_rates(
    sequential: Summary, window: Summary
) -> None:
    """Against the default fixed window (60 s windows, rollback after 2 failed ones)."""
    assert sequential.wrong_rollbacks <= window.wrong_rollbacks, (sequential, window)
    assert sequential.caught >= window.caught, (sequential, window)
    assert sequential.median_requests_good < window.median_requests_good, (sequential, window)
    assert sequential.median_requests_bad < window.median_requests_bad, (sequential, window)


@pytest.mark.parametrize("name", ["sequential", "window-60s"])
@pytest.mark.parametrize("rate", [BASE_RATE, BAD_RATE])
def test_counts_and_records_through_rollout_stats_give_the_same_verdicts(
    name: str, rate: float
) -> None:
    """The fast path (counts per tick) is what the controller sees from RolloutStats."""
    spec = design(name)
    for seed in range(3):
        assert simulate(spec, rate, seed) == simulate(spec, rate, seed, through_records=True)


def test_an_unknown_design_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown design 'bayes'"):
        design("bayes")
