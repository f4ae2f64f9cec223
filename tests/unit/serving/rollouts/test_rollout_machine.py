"""The rollout state machine, driven by an injected clock (plain numbers of seconds)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest

from serving.errors import InvalidRolloutSpec, InvalidRolloutTransition
from serving.rollouts import checks
from serving.rollouts.checks import ArmStats, CheckResult, WindowStats, register_check
from serving.rollouts.machine import (
    Rollout,
    abort,
    activate,
    is_active,
    pause,
    promote_now,
    restart_window,
    resume,
    start,
    tick,
    window_started_at,
)
from serving.rollouts.spec import CheckSpec, RolloutSpec, parse_rollout_spec
from tests.unit.serving.rollouts.conftest import detector_spec

T0 = 1_700_000_000.0  # wall-clock seconds: rollouts are persisted and read by other processes
# The state machine's window mechanics (thresholds, failed-check tallies, steps) are pinned with
# each window judged alone; the sequential checks have their own tests
# (test_rollout_sequential_machine.py).
WINDOW_CHECKS = [
    {"name": "error_rate", "threshold": 0.05, "method": "window"},
    {"name": "latency_p99_ratio", "threshold": 2.0},
    {"name": "shadow_agreement", "threshold": 0.8, "method": "window"},
]


def _spec(**kw: object) -> RolloutSpec:
    return parse_rollout_spec(detector_spec(**{"checks": WINDOW_CHECKS, **kw}))


def _running(**kw: object) -> Rollout:
    r, _ = start(_spec(**kw), champion_version=2, rollout_id="ro-1", now=T0)
    r, _, _ = activate(r, T0)
    return r


def _arm(n: int, errors: int = 0, ms: float = 10.0) -> ArmStats:
    arm = ArmStats()
    for i in range(n):
        arm.record(ms, error=i < errors)
    return arm


def _stats(
    champion: int = 30,
    challenger: int = 30,
    errors: int = 0,
    champion_ms: float = 10.0,
    challenger_ms: float = 12.0,
    compared: int = 0,
    agreement: float = 1.0,
    circuit_open: bool = False,
) -> WindowStats:
    stats = WindowStats(
        champion=_arm(champion, ms=champion_ms),
        challenger=_arm(challenger, errors, ms=challenger_ms),
        circuit_open=circuit_open,
    )
    for _ in range(compared):
        stats.shadow.record(agreement)
    return stats


def _result(detail: dict, name: str) -> dict:
    return next(x for x in detail["results"] if x["name"] == name)


def test_start_is_pending_and_activate_sets_step_zero() -> None:
    r, events = start(_spec(), champion_version=2, rollout_id="ro-1", now=T0)
    assert (r.state, r.step_index, r.weight, r.model, r.challenger_version) == (
        "pending",
        -1,
        0.0,
        "detector",
        3,
    )
    assert [(e.kind, e.from_state, e.to_state) for e in events] == [("started", None, "pending")]
    assert events[0].detail["weights"] == [10, 50, 100]
    # Nothing happens before the challenger serves, however long that takes.
    assert tick(r, _stats(), T0 + 3600)[0] is r
    r2, events, action = activate(r, T0 + 5)
    assert (r2.state, r2.step_index, r2.weight) == ("progressing", 0, 10.0)
    assert (action.kind, action.weight) == ("set_weight", 10.0)
    assert window_started_at(r2) == T0 + 5
    assert [(e.kind, e.from_state, e.to_state, e.weight) for e in events] == [
        ("step", "pending", "progressing", 10.0)
    ]


def test_start_refuses_the_champion_as_challenger() -> None:
    with pytest.raises(InvalidRolloutSpec, match="challenger_version 3 is already the champion"):
        start(_spec(), champion_version=3, rollout_id="ro-1", now=T0)


def test_a_passing_rollout_goes_through_every_step_to_promoted() -> None:
    r = _running()
    actions, kinds = [], []
    now = T0
    for _ in range(3):
        assert tick(r, _stats(), now + 59)[0] is r  # the window is not over yet
        now += 60
        # At weight 100 the champion gets no traffic: its arm is not required there.
        stats = _stats(champion=0) if r.weight == 100 else _stats()
        r, events, action = tick(r, stats, now)
        actions.append((action.kind, action.weight))
        kinds += [e.kind for e in events]
        assert window_started_at(r) == now or r.state == "promoted"
    assert actions == [("set_weight", 50.0), ("set_weight", 100.0), ("promote", 100.0)]
    assert kinds == ["step", "step", "promoted"]
    assert (r.state, r.weight, r.ended_reason) == ("promoted", 100.0, "checks_passed")
    assert (r.failed_checks, r.passed_intervals) == (0, 3)
    assert not is_active(r)
    # At weight 100 the latency ratio abstained; the challenger's error rate still judged.
    assert {x["name"]: x["passed"] for x in r.last_results} == {
        "circuit_breaker": True,
        "error_rate": True,
        "latency_p99_ratio": None,
        "shadow_agreement": None,
    }
    # An ended rollout ignores further ticks.
    assert tick(r, _stats(), now + 600) == (r, [], tick(r, _stats(), now)[2])


def test_at_weight_100_the_champions_last_trickle_does_not_judge_the_challenger() -> None:
    """For a reconcile interval after the step to 100 the ingresses still send some requests
    to the champion; a latency ratio over those few idle-champion calls is no verdict."""
    r = _running(step_weights=[50, 100])
    r, _, _ = tick(r, _stats(), T0 + 60)
    assert r.weight == 100
    stats = _stats(champion=5, challenger=30, champion_ms=5.0, challenger_ms=500.0)
    r, _, action = tick(r, stats, T0 + 120)
    assert (action.kind, r.state) == ("promote", "promoted")
    latency = next(x for x in r.last_results if x["name"] == "latency_p99_ratio")
    assert latency["passed"] is None and "weight 100" in latency["detail"]
    # Below 100, with the champion's arm full, the same latencies fail the step.
    slow = _running(step_weights=[50, 100], threshold=1)
    full = _stats(champion=30, challenger=30, champion_ms=5.0, challenger_ms=500.0)
    slow, _, action = tick(slow, full, T0 + 60)
    assert (action.kind, action.reason) == ("rollback", "latency_p99_ratio")


def test_failed_checks_count_up_to_threshold_then_roll_back() -> None:
    r = _running(threshold=2)
    bad = _stats(challenger=30, errors=6)  # 20% errors
    r1, events, action = tick(r, bad, T0 + 60)
    assert action.kind == "none"
    assert (r1.state, r1.weight, r1.failed_checks) == ("progressing", 10.0, 1)
    assert window_started_at(r1) == T0 + 60  # a new window on the same step
    [ev] = events
    assert (ev.kind, ev.from_state, ev.to_state, ev.weight) == (
        "check_failed",
        "progressing",
        "progressing",
        10.0,
    )
    assert ev.detail["failed"] == ["error_rate"]
    assert _result(ev.detail, "error_rate")["value"] == pytest.approx(0.2)
    assert ev.detail["samples"]["challenger_requests"] == 30
    assert ev.detail["samples"]["challenger_errors"] == 6

    assert tick(r1, bad, T0 + 119)[0] is r1  # second window still open
    r2, events, action = tick(r1, bad, T0 + 120)
    assert (action.kind, action.weight, action.reason) == ("rollback", 0.0, "error_rate")
    assert action.failed_check is not None and action.failed_check.value == pytest.approx(0.2)
    assert (r2.state, r2.weight, r2.failed_checks, r2.ended_reason) == (
        "rolled_back",
        0.0,
        2,
        "error_rate",
    )
    assert [(e.kind, e.from_state, e.to_state) for e in events] == [
        ("check_failed", "progressing", "progressing"),
        ("rolled_back", "progressing", "rolled_back"),
    ]
    rolled = events[1].detail
    assert rolled["reason"] == "error_rate" and rolled["check"]["value"] == pytest.approx(0.2)
    assert rolled["check"]["threshold"] == 0.05


def test_failed_checks_add_up_across_steps() -> None:
    r = _running(threshold=2)
    r, _, _ = tick(r, _stats(errors=6), T0 + 60)
    r, _, action = tick(r, _stats(), T0 + 120)
    assert (action.kind, r.weight, r.failed_checks) == ("set_weight", 50.0, 1)
    r, _, action = tick(r, _stats(challenger_ms=50.0), T0 + 180)  # p99 ratio 5 > 2
    assert (action.kind, action.reason, r.state) == ("rollback", "latency_p99_ratio", "rolled_back")
    assert action.failed_check is not None and action.failed_check.value == 5.0


def test_min_sample_guard_gives_no_verdict_and_no_advance() -> None:
    r = _running()
    # The challenger is short of min_requests (20), even with many errors: no verdict.
    short = _stats(challenger=19, errors=19)
    assert tick(r, short, T0 + 61) == (r, [], tick(r, short, T0)[2])
    assert tick(r, short, T0 + 61)[0] is r
    # The champion is short while it still gets traffic: no advance either.
    assert tick(r, _stats(champion=5), T0 + 61)[0] is r
    # Once both arms have their samples, the same window passes.
    r2, _, action = tick(r, _stats(), T0 + 90)
    assert (action.kind, r2.weight) == ("set_weight", 50.0)


def test_a_check_with_enough_data_fails_even_if_the_other_arm_is_short() -> None:
    r = _running()
    r2, events, _ = tick(r, _stats(champion=3, challenger=30, errors=15), T0 + 60)
    assert r2.failed_checks == 1 and events[0].kind == "check_failed"


def test_insufficient_data_after_the_progress_deadline() -> None:
    r = _running()  # interval 1m, deadline 5m
    trickle = _stats(champion=30, challenger=4)
    for t in (60, 200, 300):
        assert tick(r, trickle, T0 + t)[0] is r
    r2, events, action = tick(r, trickle, T0 + 301)
    assert (action.kind, action.reason, action.failed_check) == (
        "rollback",
        "insufficient_data",
        None,
    )
    assert (r2.state, r2.ended_reason, r2.weight) == ("rolled_back", "insufficient_data", 0.0)
    assert [e.kind for e in events] == ["insufficient_data", "rolled_back"]
    assert events[0].detail["missing"] == {"challenger_requests": 4}
    assert events[0].detail["min_requests"] == 20


def test_shadow_then_canary() -> None:
    r, _ = start(
        _spec(mode="shadow-then-canary", shadow_steps=2), champion_version=2, rollout_id="s", now=T0
    )
    r, events, action = activate(r, T0)
    assert (r.state, r.weight, action.kind, action.weight) == ("shadow", 0.0, "set_weight", 0.0)
    assert events[0].kind == "shadow" and events[0].detail["shadow_share"] == 0.2
    # Live traffic alone does not move the shadow phase: it needs comparisons.
    assert tick(r, _stats(compared=5), T0 + 60)[0] is r
    good = _stats(compared=40, agreement=0.9, challenger_ms=500.0)
    r, events, action = tick(r, good, T0 + 60)
    assert (r.state, r.passed_intervals, action.kind) == ("shadow", 1, "none")
    assert events[0].kind == "interval_passed"
    # Shadow latency is not compared with live traffic: no latency check in this phase.
    assert {x["name"] for x in events[0].detail["results"]} == {
        "circuit_breaker",
        "error_rate",
        "shadow_agreement",
    }
    r, events, action = tick(r, good, T0 + 120)
    assert (r.state, r.step_index, r.weight) == ("progressing", 0, 10.0)
    assert (action.kind, action.weight) == ("set_weight", 10.0)
    assert [(e.kind, e.from_state, e.to_state) for e in events] == [
        ("step", "shadow", "progressing")
    ]


def test_shadow_agreement_failure_in_shadow_rolls_back() -> None:
    r = _running(mode="shadow-then-canary", threshold=1)
    r2, events, action = tick(r, _stats(compared=40, agreement=0.5), T0 + 60)
    assert (r2.state, r2.ended_reason) == ("rolled_back", "shadow_agreement")
    assert action.kind == "rollback" and action.failed_check is not None
    assert (action.failed_check.value, action.failed_check.threshold) == (0.5, 0.8)
    assert [(e.kind, e.from_state) for e in events] == [
        ("check_failed", "shadow"),
        ("rolled_back", "shadow"),
    ]
    assert _result(events[0].detail, "shadow_agreement")["value"] == 0.5
    assert events[0].detail["samples"]["shadow_compared"] == 40


def test_an_open_circuit_counts_as_a_failed_check_without_samples() -> None:
    # No check listed at all: the circuit breaker still judges.
    r = _running(checks=[], threshold=2)
    open_circuit = _stats(challenger=0, circuit_open=True)
    r1, events, _ = tick(r, open_circuit, T0 + 60)
    assert r1.failed_checks == 1
    assert events[0].detail["failed"] == ["circuit_breaker"]
    assert _result(events[0].detail, "circuit_breaker")["value"] == 1.0
    r2, _, action = tick(r1, open_circuit, T0 + 120)
    assert (r2.state, r2.ended_reason, action.reason) == (
        "rolled_back",
        "circuit_breaker",
        "circuit_breaker",
    )


def test_a_disabled_check_is_not_evaluated() -> None:
    r = _running(checks=[{"name": "error_rate", "threshold": 0.01, "enabled": False}])
    _, events, action = tick(r, _stats(errors=15), T0 + 60)
    assert action.kind == "set_weight"
    assert [x["name"] for x in events[0].detail["results"]] == ["circuit_breaker"]


@dataclass
class _Broken:
    name: str = "broken"
    phases: frozenset[str] = frozenset({"canary"})

    def validate(self, spec: CheckSpec) -> None:
        pass

    def evaluate(self, stats: WindowStats, spec: CheckSpec, min_requests: int) -> CheckResult:
        raise RuntimeError("metrics backend down")


def test_a_check_that_raises_counts_as_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "CHECKS", dict(checks.CHECKS))
    register_check(_Broken())
    r = _running(checks=[{"name": "broken", "threshold": 1}], threshold=1)
    r2, events, action = tick(r, _stats(), T0 + 60)
    assert (r2.state, action.reason) == ("rolled_back", "broken")
    assert "metrics backend down" in _result(events[0].detail, "broken")["detail"]


def test_pause_and_resume() -> None:
    r = _running()
    p, events = pause(r, T0 + 30)
    assert (p.state, p.paused_state, p.weight) == (
        "paused",
        "progressing",
        10.0,
    )
    assert (events[0].kind, events[0].from_state, events[0].to_state) == (
        "paused",
        "progressing",
        "paused",
    )
    # No analysis and no deadline while paused.
    assert tick(p, _stats(challenger=0), T0 + 3600)[0] is p
    q, events = resume(p, T0 + 4000)
    assert (q.state, q.paused_state, q.weight, q.step_index) == ("progressing", None, 10.0, 0)
    assert window_started_at(q) == T0 + 4000  # what was measured while paused is not judged
    assert events[0].kind == "resumed" and events[0].to_state == "progressing"
    assert tick(q, _stats(), T0 + 4059)[0] is q
    assert tick(q, _stats(), T0 + 4060)[2].weight == 50.0

    s = _running(mode="shadow-then-canary")
    s, _ = pause(s, T0 + 1)
    s, _ = resume(s, T0 + 2)
    assert s.state == "shadow"


def test_promote_now() -> None:
    r = _running()
    p, _ = pause(r, T0 + 1)
    for source in (r, p):
        done, events, action = promote_now(source, T0 + 2)
        assert (done.state, done.weight, done.ended_reason) == (
            "promoted",
            100.0,
            "manual_promotion",
        )
        assert (action.kind, action.weight) == ("promote", 100.0)
        assert events[0].kind == "promoted" and events[0].from_state == source.state


def test_abort() -> None:
    pending, _ = start(_spec(), champion_version=2, rollout_id="ro-1", now=T0)
    running = _running()
    paused, _ = pause(running, T0 + 1)
    for source in (pending, running, paused):
        done, events, action = abort(source, T0 + 2)
        assert (done.state, done.weight, done.ended_reason) == ("aborted", 0.0, "aborted")
        assert (action.kind, action.weight, action.reason) == ("rollback", 0.0, "aborted")
        assert (events[0].kind, events[0].from_state) == ("aborted", source.state)
        assert not is_active(done)


@pytest.mark.parametrize(
    ("op", "state"),
    [
        (resume, "progressing"),
        (pause, "pending"),
        (activate, "progressing"),
        (promote_now, "pending"),
        (pause, "promoted"),
        (abort, "aborted"),
        (resume, "rolled_back"),
        (promote_now, "aborted"),
    ],
)
def test_invalid_transitions_quote_the_state(op, state: str) -> None:  # type: ignore[no-untyped-def]
    pending, _ = start(_spec(), champion_version=2, rollout_id="ro-1", now=T0)
    running, _, _ = activate(pending, T0)
    by_state = {
        "pending": pending,
        "progressing": running,
        "promoted": promote_now(running, T0)[0],
        "aborted": abort(running, T0)[0],
        "rolled_back": tick(_running(threshold=1), _stats(errors=30), T0 + 60)[0],
    }
    with pytest.raises(InvalidRolloutTransition) as e:
        op(by_state[state], T0 + 1)
    assert f"it is {state!r}" in e.value.message and "'ro-1'" in e.value.message
    assert e.value.status_code == 409


def test_functions_do_not_mutate_their_argument() -> None:
    r = _running()
    before = copy.deepcopy(r)
    tick(r, _stats(errors=10), T0 + 60)
    tick(r, _stats(), T0 + 60)
    pause(r, T0 + 1)
    abort(r, T0 + 1)
    assert r == before


def test_restart_window_only_moves_the_window() -> None:
    r = _running()
    r2 = restart_window(r, T0 + 250)
    assert window_started_at(r2) == T0 + 250 and (r2.state, r2.weight) == (r.state, r.weight)
    # The deadline now counts from the restart.
    assert tick(r2, _stats(challenger=0), T0 + 500)[0] is r2
    pending, _ = start(_spec(), champion_version=2, rollout_id="x", now=T0)
    assert restart_window(pending, T0 + 9) is pending


def test_rollout_round_trips_through_a_dict() -> None:
    r, _, _ = tick(_running(), _stats(errors=6), T0 + 60)
    assert r.last_results
    again = Rollout.from_dict(r.to_dict())
    assert again == r and again.spec.weights() == [10, 50, 100]
