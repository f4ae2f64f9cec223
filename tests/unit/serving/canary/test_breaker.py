from __future__ import annotations

import pytest

from serving.canary.breaker import Breakers, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, threshold: int = 3) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=threshold, window_s=10.0, cooldown_s=5.0, clock=clock)


def test_opens_at_threshold_within_window() -> None:
    clock = Clock()
    b = make(clock)
    for _ in range(2):
        b.record_failure()
        assert b.state == "closed" and b.allow()
    b.record_failure()
    assert b.state == "open" and not b.allow()


def test_failures_outside_window_do_not_count() -> None:
    clock = Clock()
    b = make(clock)
    b.record_failure()
    b.record_failure()
    clock.now += 10.5  # both fall out of the 10 s window
    b.record_failure()
    assert b.state == "closed"
    b.record_failure()
    b.record_failure()
    assert b.state == "open"


def test_successes_in_closed_do_not_reset_the_window() -> None:
    clock = Clock()
    b = make(clock)
    b.record_failure()
    b.record_success()
    b.record_failure()
    b.record_success()
    b.record_failure()
    assert b.state == "open"


def test_stays_open_until_cooldown_then_one_trial() -> None:
    clock = Clock()
    b = make(clock)
    for _ in range(3):
        b.record_failure()
    clock.now += 4.9
    assert not b.allow() and b.state == "open"
    # Late results of calls started before it opened change nothing.
    b.record_success()
    b.record_failure()
    clock.now += 0.1
    assert b.state == "half_open"  # the late failure did not extend the cooldown
    assert b.allow()
    assert not b.allow() and not b.allow()  # only ONE trial call
    assert b.state == "half_open"


def test_half_open_success_closes() -> None:
    clock = Clock()
    b = make(clock)
    for _ in range(3):
        b.record_failure()
    clock.now += 5
    assert b.allow()
    b.record_success()
    assert b.state == "closed" and b.allow() and b.allow()
    # The old failures were forgotten: it takes a full threshold again to open.
    b.record_failure()
    b.record_failure()
    assert b.state == "closed"


def test_half_open_failure_reopens_for_a_full_cooldown() -> None:
    clock = Clock()
    b = make(clock)
    for _ in range(3):
        b.record_failure()
    clock.now += 5
    assert b.allow()
    b.record_failure()
    assert b.state == "open" and not b.allow()
    clock.now += 4.9
    assert not b.allow()
    clock.now += 0.1
    assert b.allow() and b.state == "half_open"


def test_lost_trial_is_retried_after_another_cooldown() -> None:
    clock = Clock()
    b = make(clock)
    for _ in range(3):
        b.record_failure()
    clock.now += 5
    assert b.allow()  # the trial's caller never reports back
    clock.now += 4
    assert not b.allow()
    clock.now += 1
    assert b.allow() and not b.allow()


def test_threshold_one() -> None:
    b = make(Clock(), threshold=1)
    b.record_failure()
    assert b.state == "open"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_threshold": 0}, "failure_threshold 0"),
        ({"window_s": 0.0}, "window_s 0.0"),
        ({"cooldown_s": -1.0}, "cooldown_s -1.0"),
    ],
)
def test_bad_settings_are_quoted(kwargs: dict[str, float], message: str) -> None:
    settings = {"failure_threshold": 1, "window_s": 1.0, "cooldown_s": 0.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        CircuitBreaker(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(("window_s", "cooldown_s"), [(0.5, 0.0), (0.5, 0.5)])
def test_sub_second_windows_and_a_zero_cooldown_are_valid(
    window_s: float, cooldown_s: float
) -> None:
    b = CircuitBreaker(failure_threshold=1, window_s=window_s, cooldown_s=cooldown_s)
    assert (b.window_s, b.cooldown_s, b.state) == (window_s, cooldown_s, "closed")


def test_a_failure_exactly_one_window_old_still_counts() -> None:
    clock = Clock()
    b = make(clock, threshold=2)
    b.record_failure()
    clock.now += 10.0  # the window is 10 s: the first failure is at its very edge
    b.record_failure()
    assert b.state == "open"


def test_breakers_are_per_model_version() -> None:
    clock = Clock()
    breakers = Breakers(failure_threshold=2, window_s=10.0, cooldown_s=5.0, clock=clock)
    assert breakers.get("detector", 2) is breakers.get("detector", 2)
    assert breakers.get("detector", 2) is not breakers.get("detector", 1)
    for _ in range(2):
        breakers.get("detector", 2).record_failure()
        breakers.get("ocr", 5).record_failure()
    assert breakers.open_versions() == [("detector", 2), ("ocr", 5)]
    assert breakers.get("detector", 1).allow()
    clock.now += 5
    assert breakers.get("ocr", 5).allow()
    breakers.get("ocr", 5).record_success()
    assert breakers.open_versions() == [("detector", 2)]  # still half-open, untried
