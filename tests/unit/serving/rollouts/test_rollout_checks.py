from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from serving.errors import InvalidRolloutSpec
from serving.rollouts import checks
from serving.rollouts.checks import (
    CHECKS,
    RESERVOIR_SIZE,
    ArmStats,
    CheckResult,
    ShadowStats,
    WindowStats,
    get_check,
    register_check,
)
from serving.rollouts.spec import CheckSpec, parse_rollout_spec
from tests.unit.serving.rollouts.conftest import arm, evaluate


def test_arm_stats_rates_and_p99() -> None:
    arm = ArmStats()
    assert arm.error_rate is None and arm.p99_ms is None
    for ms in range(1, 101):
        arm.record(float(ms))
    arm.record(None, error=True)  # a request that failed before it had a latency
    assert (arm.requests, arm.errors, arm.latency_samples) == (101, 1, 100)
    assert arm.error_rate == pytest.approx(1 / 101)
    assert arm.p99_ms == 99.0  # nearest rank


def test_arm_stats_keep_a_bounded_uniform_reservoir() -> None:
    arm = ArmStats()
    values = [float(v) for v in range(1, 20_001)]
    random.Random(1).shuffle(values)
    for v in values:
        arm.record(v)
    assert len(arm.latencies_ms) == RESERVOIR_SIZE and arm.latency_samples == 20_000
    p99 = arm.p99_ms
    assert p99 is not None and 19_500 <= p99 <= 20_000  # true p99 is 19_800


def test_shadow_stats() -> None:
    shadow = ShadowStats()
    assert shadow.agreement is None
    for a in (1.0, 0.5, None):
        shadow.record(a)
    # A failed mirror is a comparison that agrees with nothing.
    assert (shadow.compared, shadow.failures, shadow.agreement) == (3, 1, 0.5)


def test_error_rate() -> None:
    few = evaluate("error_rate", WindowStats(challenger=arm(19, errors=19)), 0.05, method="window")
    assert few.passed is None and "19 of 20 requests" in few.detail
    ok = evaluate("error_rate", WindowStats(challenger=arm(100, errors=5)), 0.05, method="window")
    assert (ok.passed, ok.value) == (True, 0.05)
    bad = evaluate("error_rate", WindowStats(challenger=arm(100, errors=6)), 0.05, method="window")
    assert (bad.passed, bad.value, bad.threshold) == (False, 0.06, 0.05)
    # min_samples overrides the rollout's min_requests for this check only.
    lenient = evaluate(
        "error_rate",
        WindowStats(challenger=arm(5, errors=5)),
        0.05,
        min_samples=5,
        method="window",
    )
    assert lenient.passed is False


def test_latency_ratio_needs_both_arms() -> None:
    only_challenger = WindowStats(challenger=arm(50, ms=30.0))
    assert evaluate("latency_p99_ratio", only_challenger, 2.0).passed is None
    slow = WindowStats(champion=arm(50, ms=10.0), challenger=arm(50, ms=30.0))
    res = evaluate("latency_p99_ratio", slow, 2.0)
    assert (res.passed, res.value) == (False, 3.0)
    assert "30.0 ms / champion 10.0 ms" in res.detail
    fine = WindowStats(champion=arm(50, ms=10.0), challenger=arm(50, ms=15.0))
    assert evaluate("latency_p99_ratio", fine, 2.0).value == 1.5
    zero = WindowStats(champion=arm(50, ms=0.0), challenger=arm(50, ms=15.0))
    assert evaluate("latency_p99_ratio", zero, 2.0).passed is None  # no division by zero
    assert get_check("latency_p99_ratio").phases == frozenset({"canary"})


def test_shadow_agreement() -> None:
    stats = WindowStats()
    for _ in range(19):
        stats.shadow.record(0.0)
    assert evaluate("shadow_agreement", stats, 0.8, method="window").passed is None
    for _ in range(81):
        stats.shadow.record(1.0)
    res = evaluate("shadow_agreement", stats, 0.81, method="window")
    assert (res.passed, res.value) == (True, 0.81)  # the bound is inclusive
    assert evaluate("shadow_agreement", stats, 0.82, method="window").passed is False
    assert get_check("shadow_agreement").phases == frozenset({"shadow", "canary"})


def test_circuit_breaker_needs_no_samples() -> None:
    res = evaluate("circuit_breaker", WindowStats(circuit_open=True), 0.0)
    assert (res.passed, res.value) == (False, 1.0)
    closed = evaluate("circuit_breaker", WindowStats(), 0.0)
    assert (closed.passed, closed.value) == (True, 0.0)


def test_check_result_round_trips() -> None:
    res = CheckResult("error_rate", False, 0.2, 0.05, "6 errors in 30 requests")
    assert res.to_dict()["value"] == 0.2
    assert CheckResult.from_dict(res.to_dict()) == res


def test_unknown_check_names_the_known_ones() -> None:
    with pytest.raises(InvalidRolloutSpec) as e:
        get_check("drift")
    assert "'drift'" in e.value.message and "'error_rate'" in e.value.message


@dataclass
class _Drift:
    name: str = "toy_drift"
    phases: frozenset[str] = frozenset({"canary"})

    def validate(self, spec: CheckSpec) -> None:
        if spec.threshold > 1:
            raise ValueError(f"drift share in [0, 1], got {spec.threshold!r}")

    def evaluate(self, stats: WindowStats, spec: CheckSpec, min_requests: int) -> CheckResult:
        share = stats.extra.get(self.name)
        if share is None:
            return CheckResult(self.name, None, None, spec.threshold, "no drift report")
        return CheckResult(self.name, share <= spec.threshold, share, spec.threshold)


def test_a_plugged_in_check_is_usable_in_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "CHECKS", dict(CHECKS))
    raw = {"model": "m", "challenger_version": 2}
    with pytest.raises(InvalidRolloutSpec, match="unknown check 'toy_drift'"):
        parse_rollout_spec({**raw, "checks": [{"name": "toy_drift", "threshold": 0.3}]})
    register_check(_Drift(name="toy_drift"))
    spec = parse_rollout_spec({**raw, "checks": [{"name": "toy_drift", "threshold": 0.3}]})
    res = get_check("toy_drift").evaluate(WindowStats(extra={"toy_drift": 0.4}), spec.checks[0], 20)
    assert (res.passed, res.value) == (False, 0.4)
    with pytest.raises(InvalidRolloutSpec, match="drift share in"):
        parse_rollout_spec({**raw, "checks": [{"name": "toy_drift", "threshold": 3}]})


def test_register_check_refuses_clashes_and_bad_phases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "CHECKS", dict(CHECKS))
    with pytest.raises(ValueError, match="'error_rate' is already registered"):
        register_check(_Drift(name="error_rate"))
    with pytest.raises(ValueError, match="phases within"):
        register_check(_Drift(phases=frozenset({"always"})))
    replacement = _Drift(name="error_rate")
    register_check(replacement, replace=True)
    assert get_check("error_rate") is replacement


def test_shadow_stats_count_every_failed_mirror() -> None:
    shadow = ShadowStats()
    for a in (None, None, 0.5, None):
        shadow.record(a)
    assert (shadow.compared, shadow.failures, shadow.agreement) == (4, 3, 0.125)


def test_latency_ratio_waits_for_enough_requests_on_both_arms() -> None:
    def ratio(champion: int, challenger: int) -> CheckResult:
        stats = WindowStats(champion=arm(champion, ms=10.0), challenger=arm(challenger, ms=20.0))
        return evaluate("latency_p99_ratio", stats, 3.0)

    # Exactly the floor on both arms is enough.
    assert ratio(20, 20) == CheckResult(
        "latency_p99_ratio", True, 2.0, 3.0, "p99 challenger 20.0 ms / champion 10.0 ms"
    )
    # One arm short is no verdict, whichever arm it is, and the detail says how short.
    assert ratio(20, 19) == CheckResult(
        "latency_p99_ratio", None, None, 3.0, "champion 20, challenger 19 of 20 requests"
    )
    assert ratio(19, 20) == CheckResult(
        "latency_p99_ratio", None, None, 3.0, "champion 19, challenger 20 of 20 requests"
    )


def test_latency_ratio_needs_a_positive_champion_p99_and_a_challenger_p99() -> None:
    fast = WindowStats(champion=arm(20, ms=0.5), challenger=arm(20, ms=1.0))
    assert evaluate("latency_p99_ratio", fast, 3.0).value == 2.0  # sub-millisecond is usable
    zero = WindowStats(champion=arm(20, ms=0.0), challenger=arm(20, ms=1.0))
    assert evaluate("latency_p99_ratio", zero, 3.0) == CheckResult(
        "latency_p99_ratio", None, None, 3.0, "no usable p99 (0.0, 1.0 ms)"
    )
    failed = ArmStats()
    for _ in range(20):
        failed.record(None, error=True)  # every challenger call failed before any latency
    no_p99 = WindowStats(champion=arm(20, ms=10.0), challenger=failed)
    assert evaluate("latency_p99_ratio", no_p99, 3.0) == CheckResult(
        "latency_p99_ratio", None, None, 3.0, "no usable p99 (10.0, None ms)"
    )


def _shadow(agreements: list[float | None]) -> ShadowStats:
    shadow = ShadowStats()
    for a in agreements:
        shadow.record(a)
    return shadow


def test_every_builtin_result_is_complete_and_says_what_it_measured() -> None:
    """The whole CheckResult, as the rollout's events and the registry tags show it."""
    few = WindowStats(challenger=arm(19, errors=1))
    assert evaluate("error_rate", few, 0.05, method="window") == CheckResult(
        "error_rate", None, 1 / 19, 0.05, "19 of 20 requests"
    )
    bad = WindowStats(challenger=arm(20, errors=2))
    assert evaluate("error_rate", bad, 0.05, method="window") == CheckResult(
        "error_rate", False, 0.1, 0.05, "2 errors in 20 requests"
    )
    slow = WindowStats(champion=arm(20, ms=10.0), challenger=arm(20, ms=30.0))
    assert evaluate("latency_p99_ratio", slow, 3.0) == CheckResult(
        "latency_p99_ratio", True, 3.0, 3.0, "p99 challenger 30.0 ms / champion 10.0 ms"
    )
    assert evaluate("latency_p99_ratio", slow, 2.9).passed is False
    thin = WindowStats(shadow=_shadow([1.0] * 18 + [None]))  # a failed mirror agrees with nothing
    assert evaluate("shadow_agreement", thin, 0.8, method="window") == CheckResult(
        "shadow_agreement",
        None,
        pytest.approx(18 / 19),
        0.8,
        "19 compared, 1 failed shadow calls; need 20",
    )
    agree = WindowStats(shadow=_shadow([1.0] * 16 + [None] * 4))
    assert evaluate("shadow_agreement", agree, 0.8, method="window") == CheckResult(
        "shadow_agreement", True, pytest.approx(0.8), 0.8, "20 compared, 4 failed shadow calls"
    )
    broken = WindowStats(shadow=_shadow([1.0] * 15 + [None] * 5))
    assert evaluate("shadow_agreement", broken, 0.8, method="window").passed is False
    assert evaluate("circuit_breaker", WindowStats(circuit_open=True), 0.0) == CheckResult(
        "circuit_breaker", False, 1.0, 0.0, "challenger circuit open"
    )
    assert evaluate("circuit_breaker", WindowStats(), 0.5) == CheckResult(
        "circuit_breaker", True, 0.0, 0.0, "closed"
    )


def test_a_latency_threshold_below_one_is_valid_and_zero_is_not() -> None:
    assert CheckSpec(name="latency_p99_ratio", threshold=0.5).threshold == 0.5
    with pytest.raises(ValueError, match=r"latency_p99_ratio threshold must be > 0, got 0\.0"):
        CheckSpec(name="latency_p99_ratio", threshold=0.0)


def test_the_breaker_check_cannot_be_turned_off() -> None:
    with pytest.raises(
        ValueError, match=r"error, circuit_breaker is always on and cannot be disabled \["
    ):
        CheckSpec(name="circuit_breaker", threshold=0.0, enabled=False)


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_a_fraction_threshold_may_be_either_end(threshold: float) -> None:
    assert CheckSpec(name="error_rate", threshold=threshold).threshold == threshold


def test_a_fraction_threshold_past_one_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"error_rate threshold is a fraction in \[0, 1\], got 1.5"
    ):
        CheckSpec(name="error_rate", threshold=1.5)


def test_an_unknown_check_names_itself_in_the_error_details() -> None:
    with pytest.raises(InvalidRolloutSpec) as info:
        get_check("p50_latency")
    assert info.value.details == {"check": "p50_latency"}
    assert "unknown check 'p50_latency'; known checks: [" in info.value.message


def test_a_check_with_a_name_but_no_phases_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "CHECKS", dict(checks.CHECKS))

    @dataclass
    class Phaseless:
        name: str = "phaseless"
        phases: frozenset[str] = frozenset()

    with pytest.raises(ValueError, match="needs a name and phases"):
        register_check(Phaseless())  # type: ignore[arg-type]


def test_a_stored_result_from_before_the_pending_flag_reads_as_not_pending() -> None:
    doc = CheckResult("error_rate", True, 0.0, 0.05, "ok").to_dict()
    del doc["pending"]  # written by a controller that did not know the flag
    assert CheckResult.from_dict(doc).pending is False
