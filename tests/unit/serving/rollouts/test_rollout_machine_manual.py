"""The state machine's manual operations, field by field: what the history and the API show."""

from __future__ import annotations

import dataclasses

import pytest

from serving.errors import InvalidRolloutSpec, InvalidRolloutTransition
from serving.rollouts.checks import CheckResult
from serving.rollouts.machine import (
    Event,
    Rollout,
    abort,
    activate,
    pause,
    promote_now,
    restart_window,
    resume,
    start,
    tick,
)
from tests.unit.serving.rollouts.test_rollout_machine import T0, _running, _spec, _stats


def _at_step_one() -> Rollout:
    """A canary at its second step (weight 50), one passed window behind it."""
    r, _, _ = tick(_running(), _stats(), T0 + 60)
    assert (r.state, r.step_index, r.weight) == ("progressing", 1, 50.0)
    return r


def test_pause_keeps_everything_but_the_state() -> None:
    r = _at_step_one()
    p, events = pause(r, T0 + 70)
    assert p == dataclasses.replace(
        r, state="paused", paused_state="progressing", updated_at=T0 + 70
    )
    assert events == [Event("ro-1", T0 + 70, "paused", "progressing", "paused", 50.0, {})]


def test_resume_returns_to_the_paused_state_with_a_fresh_window() -> None:
    p, _ = pause(_at_step_one(), T0 + 70)
    q, events = resume(p, T0 + 90)
    assert q == dataclasses.replace(
        p, state="progressing", paused_state=None, phase_started_at=T0 + 90, updated_at=T0 + 90
    )
    assert events == [Event("ro-1", T0 + 90, "resumed", "paused", "progressing", 50.0, {})]


def test_a_paused_rollout_without_a_running_state_to_return_to_is_refused() -> None:
    # A store row edited by hand (or written by an older version) must not resume into
    # "pending" or an ended state.
    for bad in (None, "pending", "promoted"):
        odd = dataclasses.replace(_running(), state="paused", paused_state=bad)
        with pytest.raises(InvalidRolloutTransition, match="cannot resume rollout 'ro-1'"):
            resume(odd, T0 + 1)


def test_promote_now_records_where_the_rollout_was() -> None:
    r = _at_step_one()
    p, _ = pause(r, T0 + 70)
    done, events, action = promote_now(p, T0 + 80)
    assert done == dataclasses.replace(
        p,
        state="promoted",
        weight=100.0,
        paused_state=None,
        ended_reason="manual_promotion",
        updated_at=T0 + 80,
    )
    detail = {"reason": "manual_promotion", "step": 1, "from_weight": 50.0}
    assert events == [Event("ro-1", T0 + 80, "promoted", "paused", "promoted", 100.0, detail)]
    assert (action.kind, action.weight, action.reason) == ("promote", 100.0, "manual_promotion")
    assert action.failed_check is None


def test_promote_now_from_shadow_skips_the_canary_steps() -> None:
    s = _running(mode="shadow-then-canary")
    done, events, _ = promote_now(s, T0 + 5)
    assert (done.state, done.step_index) == ("promoted", -1)
    assert events[0].detail == {"reason": "manual_promotion", "step": -1, "from_weight": 0.0}


def test_abort_records_the_weight_it_took_back() -> None:
    r = _at_step_one()
    done, events, action = abort(r, T0 + 75)
    assert done == dataclasses.replace(
        r, state="aborted", weight=0.0, ended_reason="aborted", updated_at=T0 + 75
    )
    assert events == [
        Event("ro-1", T0 + 75, "aborted", "progressing", "aborted", 0.0, {"from_weight": 50.0})
    ]
    assert action.failed_check is None


def test_activate_into_shadow_mirrors_without_live_traffic() -> None:
    pending, _ = start(
        _spec(mode="shadow-then-canary", shadow_share=0.25),
        champion_version=2,
        rollout_id="ro-1",
        now=T0,
    )
    s, events, action = activate(pending, T0 + 3)
    assert (s.state, s.weight, s.step_index, s.phase_started_at, s.updated_at) == (
        "shadow",
        0.0,
        -1,
        T0 + 3,
        T0 + 3,
    )
    assert events == [
        Event("ro-1", T0 + 3, "shadow", "pending", "shadow", 0.0, {"shadow_share": 0.25})
    ]
    assert (action.kind, action.weight, action.reason) == ("set_weight", 0.0, "shadow")


def test_activate_into_the_first_step() -> None:
    pending, _ = start(_spec(), champion_version=2, rollout_id="ro-1", now=T0)
    r, events, action = activate(pending, T0 + 3)
    assert (r.state, r.step_index, r.weight, r.phase_started_at) == ("progressing", 0, 10.0, T0 + 3)
    assert events == [
        Event("ro-1", T0 + 3, "step", "pending", "progressing", 10.0, {"step": 0, "steps": 3})
    ]
    assert (action.kind, action.weight, action.reason) == ("set_weight", 10.0, "step")


def test_refusals_say_what_was_asked_from_which_state_and_what_is_possible() -> None:
    done, _, _ = abort(_running(), T0 + 1)
    cases = [
        (pause, "pause", "possible from progressing, shadow"),
        (resume, "resume", "possible from paused"),
        (promote_now, "promote", "possible from paused, progressing, shadow"),
        (abort, "abort", "possible from paused, pending, progressing, shadow"),
        (activate, "activate", "possible from pending"),
    ]
    for op, verb, possible in cases:
        with pytest.raises(InvalidRolloutTransition) as e:
            op(done, T0 + 2)
        assert e.value.message == f"cannot {verb} rollout 'ro-1': it is 'aborted' ({possible})"
        assert e.value.details == {"rollout_id": "ro-1", "state": "aborted"}


def test_restart_window_moves_the_window_and_the_update_time_only() -> None:
    r = _at_step_one()
    assert restart_window(r, T0 + 99) == dataclasses.replace(
        r, phase_started_at=T0 + 99, updated_at=T0 + 99
    )
    p, _ = pause(r, T0 + 70)
    assert restart_window(p, T0 + 99) is p  # a paused rollout has no window running


def test_a_failed_window_records_every_sample_count_and_the_rollback_its_tally() -> None:
    r = _running(mode="shadow-then-canary", threshold=2)
    stats = _stats(champion=25, challenger=0, compared=30, agreement=0.4)
    for _ in range(3):
        stats.shadow.record(None)  # mirrored calls the challenger failed
    stats.champion.record(10.0, error=True)
    r1, [ev], _ = tick(r, stats, T0 + 61)
    assert ev.detail["samples"] == {
        "window_s": 61.0,
        "champion_requests": 26,
        "champion_errors": 1,
        "challenger_requests": 0,
        "challenger_errors": 0,
        "shadow_compared": 33,  # the 3 failed mirrors count, agreeing with nothing
        "shadow_failures": 3,
        "circuit_open": False,
    }
    assert (ev.detail["failed"], ev.detail["failed_checks"], ev.detail["threshold"]) == (
        ["shadow_agreement"],
        1,
        2,
    )
    assert r1.last_results == ev.detail["results"]
    worse = _stats(champion=25, challenger=0, compared=30, agreement=0.2)
    r2, events, _ = tick(r1, worse, T0 + 122)
    rolled = events[-1]
    assert (rolled.kind, rolled.weight, rolled.detail["failed_checks"]) == ("rolled_back", 0.0, 2)
    assert rolled.detail["check"]["name"] == "shadow_agreement"
    assert events[0].detail["samples"]["window_s"] == 61.0  # the second window, from T0 + 61
    # The rolled-back rollout shows the window that ended it, not the one before.
    assert r2.last_results == events[0].detail["results"] != r1.last_results


def test_a_passed_shadow_window_opens_the_next_one() -> None:
    r = _running(mode="shadow-then-canary", shadow_steps=3)
    good = _stats(compared=40, agreement=0.9)
    r1, [ev], action = tick(r, good, T0 + 60)
    assert (r1.phase_started_at, r1.updated_at, r1.passed_intervals) == (T0 + 60, T0 + 60, 1)
    assert (ev.kind, ev.from_state, ev.to_state, ev.weight) == (
        "interval_passed",
        "shadow",
        "shadow",
        0.0,
    )
    assert ev.detail["samples"]["shadow_compared"] == 40 and action.kind == "none"
    r2, _, _ = tick(r1, good, T0 + 120)
    r3, [step], _ = tick(r2, good, T0 + 180)
    assert (r2.state, r3.state, step.detail["step"], step.detail["steps"]) == (
        "shadow",
        "progressing",
        0,
        3,
    )


def test_an_ended_window_short_of_data_names_each_short_arm() -> None:
    shadow = _running(mode="shadow-then-canary")  # min_requests 20, deadline 5 m
    done, events, _ = tick(shadow, _stats(compared=19), T0 + 301)
    assert events[0].detail["missing"] == {"shadow_compared": 19}
    assert (events[0].ts, done.updated_at) == (T0 + 301, T0 + 301)
    assert done.last_results == events[0].detail["results"] != []
    canary = _running()
    _, events, _ = tick(canary, _stats(champion=3, challenger=7), T0 + 301)
    assert events[0].detail["missing"] == {"challenger_requests": 7, "champion_requests": 3}


def test_exactly_min_requests_is_enough() -> None:
    r, _, action = tick(_running(), _stats(champion=20, challenger=20), T0 + 60)
    assert (action.kind, r.weight) == ("set_weight", 50.0)
    s = _running(mode="shadow-then-canary")
    s, [ev], _ = tick(s, _stats(compared=20), T0 + 60)
    assert (s.state, ev.kind, ev.ts, s.updated_at) == ("progressing", "step", T0 + 60, T0 + 60)


def test_a_passed_shadow_interval_is_stamped_with_its_time() -> None:
    s = _running(mode="shadow-then-canary", shadow_steps=2)
    _, [ev], _ = tick(s, _stats(compared=20), T0 + 61)
    assert (ev.kind, ev.ts) == ("interval_passed", T0 + 61)


def test_every_result_carries_the_threshold_it_was_judged_against(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The built-in breaker check (listed or not) and an abstaining check keep their thresholds.
    r = _running(step_weights=[100])
    _, [ev], _ = tick(r, _stats(champion=0), T0 + 60)
    by_name = {x["name"]: x for x in ev.detail["results"]}
    assert by_name["circuit_breaker"]["threshold"] == 0.0
    latency = by_name["latency_p99_ratio"]
    assert (latency["passed"], latency["value"], latency["threshold"]) == (None, None, 2.0)
    assert latency["detail"] == "the champion serves no traffic at weight 100"
    # Listed with a threshold of its own, the breaker is still the built-in one: open fails.
    listed = _running(checks=[{"name": "circuit_breaker", "threshold": 3}])
    _, [ev], _ = tick(listed, _stats(), T0 + 60)
    assert [(x["name"], x["threshold"]) for x in ev.detail["results"]] == [("circuit_breaker", 0)]


def test_a_check_that_raises_keeps_its_threshold_and_500_characters_of_the_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from serving.rollouts import checks
    from tests.unit.serving.rollouts.test_rollout_machine import _Broken

    class _Verbose(_Broken):
        def evaluate(self, *args: object) -> CheckResult:
            raise RuntimeError("x" * 1000)

    monkeypatch.setattr(checks, "CHECKS", dict(checks.CHECKS))
    checks.register_check(_Verbose())
    r = _running(checks=[{"name": "broken", "threshold": 7}], threshold=3)
    _, [ev], _ = tick(r, _stats(), T0 + 60)
    broken = next(x for x in ev.detail["results"] if x["name"] == "broken")
    assert (broken["passed"], broken["threshold"]) == (False, 7)
    assert len(broken["detail"]) == 500 and broken["detail"].startswith("check raised RuntimeError")


def test_aborting_a_paused_rollout_clears_where_it_was_paused() -> None:
    p, _ = pause(_at_step_one(), T0 + 70)
    done, _, _ = abort(p, T0 + 71)
    assert (done.state, done.paused_state) == ("aborted", None)


def test_start_records_what_was_asked_and_opens_its_first_window_now() -> None:
    spec = _spec(mode="shadow-then-canary")
    r, [ev] = start(spec, champion_version=2, rollout_id="ro-1", now=T0)
    assert (r.created_at, r.updated_at, r.phase_started_at) == (T0, T0, T0)
    assert ev == Event(
        "ro-1",
        T0,
        "started",
        None,
        "pending",
        0.0,
        {
            "model": "detector",
            "champion_version": 2,
            "challenger_version": 3,
            "mode": "shadow-then-canary",
            "weights": [10, 50, 100],
        },
    )
    with pytest.raises(InvalidRolloutSpec) as e:
        start(spec, champion_version=3, rollout_id="ro-2", now=T0)
    assert e.value.details == {"model": "detector", "version": 3}
