"""Evidence across steps: the state machine with sequential checks, its persistence, restarts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from serving.rollouts.checks import ArmStats, CheckResult, WindowStats
from serving.rollouts.controller.store import RolloutStore
from serving.rollouts.ledger import undecided
from serving.rollouts.machine import Rollout, activate, start, tick
from serving.rollouts.manager import RolloutManager
from serving.rollouts.sequential import Evidence
from serving.rollouts.spec import parse_rollout_spec
from tests.unit.serving.rollouts.conftest import SPEC, detector_spec, traffic

T0 = 1_700_000_000.0


def _running(**kw: object) -> Rollout:
    checks = [{"name": "error_rate", "threshold": 0.05}]  # sequential: its default
    raw = detector_spec(**{"checks": checks, **kw})
    r, _ = start(parse_rollout_spec(raw), champion_version=2, rollout_id="ro-1", now=T0)
    r, _, _ = activate(r, T0)
    return r


def _stats(champion: tuple[int, int], challenger: tuple[int, int]) -> WindowStats:
    return WindowStats(
        champion=ArmStats(requests=champion[0], errors=champion[1]),
        challenger=ArmStats(requests=challenger[0], errors=challenger[1]),
    )


def _counts(r: Rollout) -> tuple[int, int, int, int, int]:
    ev = r.evidence["error_rate"]
    return (
        ev["champion_requests"],
        ev["champion_errors"],
        ev["challenger_requests"],
        ev["challenger_errors"],
        ev["windows"],
    )


def test_an_undecided_window_is_counted_and_another_opens_on_the_same_step() -> None:
    r = _running()
    r1, events, action = tick(r, _stats((270, 5), (30, 1)), T0 + 60)
    assert (r1.state, r1.step_index, r1.phase_started_at, action.kind) == (
        "progressing",
        0,
        T0 + 60,
        "none",
    )
    assert _counts(r1) == (270, 5, 30, 1, 1)
    assert r1.evidence["error_rate"]["decision"] is None
    [ev] = events
    assert (ev.kind, ev.detail["undecided"]) == ("undecided", ["error_rate"])
    assert (ev.ts, ev.from_state, ev.to_state, ev.weight) == (
        T0 + 60,
        "progressing",
        "progressing",
        10.0,
    )
    # The event records the statistic, the per-arm counts and both boundaries.
    [res] = [x for x in ev.detail["results"] if x["name"] == "error_rate"]
    assert res["passed"] is None and res["evidence"]["challenger_requests"] == 30
    assert res["evidence"]["fail_boundary"] == pytest.approx(3.8918, abs=1e-4)
    assert res["evidence"]["pass_boundary"] == pytest.approx(-3.8918, abs=1e-4)
    assert r1.last_results == ev.detail["results"]


def test_evidence_adds_up_across_windows_and_steps_until_a_pass_advances_then_promotes() -> None:
    r, now, weights = _running(), T0, []
    for _ in range(20):
        if r.state != "progressing":
            break
        now += 60
        # 300 requests a window, split by weight; the challenger as clean as the champion.
        n1 = int(300 * r.weight / 100)
        r, _, _ = tick(r, _stats((300 - n1, (300 - n1) // 50), (n1, n1 // 50)), now)
        weights.append(r.weight)
    assert r.state == "promoted" and r.ended_reason == "checks_passed"
    # Held on step 0 until the evidence was decisive, then one window per step.
    assert weights[-3:] == [50.0, 100.0, 100.0] and weights.count(50.0) == 1
    assert set(weights[:-3]) == {10.0}
    ev = r.evidence["error_rate"]
    assert ev["decision"] == "pass" and ev["windows"] == len(weights)
    assert ev["champion_requests"] + ev["challenger_requests"] == 300 * len(weights)


def test_a_decisive_fail_rolls_back_inside_a_window_whatever_the_threshold() -> None:
    r = _running(threshold=3)
    r2, events, action = tick(r, _stats((270, 5), (30, 20)), T0 + 20)  # a third of a window
    assert (r2.state, r2.ended_reason, r2.failed_checks) == ("rolled_back", "error_rate", 0)
    assert (action.kind, action.reason) == ("rollback", "error_rate")
    assert action.failed_check is not None and action.failed_check.evidence is not None
    assert action.failed_check.evidence.decision == "fail"
    assert [e.kind for e in events] == ["check_failed", "rolled_back"]
    assert {e.ts for e in events} == {T0 + 20} and r2.updated_at == T0 + 20
    assert events[0].detail["sequential"] is True and events[0].detail["failed"] == ["error_rate"]
    assert _counts(r2) == (270, 5, 30, 20, 1)
    assert r2.last_results == events[0].detail["results"] != []


def test_a_window_past_the_deadline_rolls_back_with_what_it_counted() -> None:
    r = _running()
    r2, events, action = tick(r, _stats((270, 5), (10, 0)), T0 + 301)  # deadline: 5m
    assert (r2.state, action.reason) == ("rolled_back", "insufficient_data")
    assert _counts(r2) == (270, 5, 10, 0, 1)
    assert r2.last_results == events[0].detail["results"] != []


def test_inside_a_window_only_a_decisive_fail_acts() -> None:
    r = _running()
    assert tick(r, _stats((270, 5), (30, 1)), T0 + 20)[0] is r
    window = _running(checks=[{"name": "error_rate", "threshold": 0.05, "method": "window"}])
    assert tick(window, _stats((270, 5), (30, 20)), T0 + 20)[0] is window


def test_a_window_short_of_samples_stays_open_and_is_not_counted() -> None:
    r = _running()
    assert tick(r, _stats((270, 5), (10, 0)), T0 + 60)[0] is r
    assert tick(r, _stats((290, 5), (15, 0)), T0 + 70)[0] is r
    r2, _, _ = tick(r, _stats((300, 6), (30, 0)), T0 + 80)  # the whole window, counted once
    assert _counts(r2) == (300, 6, 30, 0, 1)


def test_a_window_failed_by_another_check_still_counts_its_evidence() -> None:
    r = _running(checks=[{"name": "error_rate", "threshold": 0.05}], threshold=2)
    stats = dataclasses.replace(_stats((270, 5), (30, 1)), circuit_open=True)
    r2, events, _ = tick(r, stats, T0 + 60)
    assert (r2.failed_checks, events[0].kind, r2.phase_started_at) == (1, "check_failed", T0 + 60)
    assert _counts(r2) == (270, 5, 30, 1, 1)


def test_at_weight_100_an_undecided_check_does_not_hold_the_rollout() -> None:
    r = _running(step_weights=[100])
    r2, _, action = tick(r, _stats((0, 0), (50, 0)), T0 + 60)
    assert (r2.state, action.kind) == ("promoted", "promote")
    assert r2.evidence["error_rate"]["decision"] is None


def test_a_rollout_keeps_its_evidence_through_to_dict_and_the_store(tmp_path: Path) -> None:
    r, _, _ = tick(_running(), _stats((270, 5), (30, 1)), T0 + 60)
    assert Rollout.from_dict(r.to_dict()) == r
    store = RolloutStore(tmp_path / "rollouts.db")
    store.create(r)
    assert store.get(r.id).evidence == r.evidence
    # A rollout stored before the evidence existed reads back with none, and runs on.
    old = {k: v for k, v in r.to_dict().items() if k != "evidence"}
    legacy = Rollout.from_dict(old)
    assert legacy.evidence == {}
    r3, _, _ = tick(legacy, _stats((270, 5), (30, 1)), T0 + 120)
    assert _counts(r3) == (270, 5, 30, 1, 1)


def test_a_restarted_controller_neither_resets_the_evidence_nor_counts_twice(
    setup,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    manager, store, deployer, clock = setup
    rid = manager.start({**SPEC, "checks": [{"name": "error_rate", "threshold": 0.05}]})["id"]
    manager.tick()  # challenger ready: step 0
    clock.now += 11
    traffic(manager, rid, clock.now - 1, challenger_errors=False)  # 5 calls per arm
    manager.tick()  # the window closes, undecided: counted
    counted = manager.describe(rid)["evidence"]["error_rate"]
    assert (counted["champion_requests"], counted["challenger_requests"], counted["windows"]) == (
        5,
        5,
        1,
    )
    clock.now += 5
    traffic(manager, rid, clock.now - 1, challenger_errors=False)  # the open window: lost
    again = RolloutManager(
        RolloutStore(tmp_path / "rollouts.db"), store, deployer, clock=clock, drain_delay_s=5
    )
    assert again.describe(rid)["evidence"] == {"error_rate": counted}  # not reset
    again.tick()  # too early: nothing closes, nothing is counted
    clock.now += 11
    traffic(again, rid, clock.now - 1, challenger_errors=False)
    again.tick()
    after = again.describe(rid)["evidence"]["error_rate"]
    assert (after["champion_requests"], after["challenger_requests"], after["windows"]) == (
        10,
        10,
        2,
    )
    again.tick()  # the same window is never counted twice
    assert again.describe(rid)["evidence"]["error_rate"] == after


def test_only_a_check_that_can_never_decide_lets_weight_100_promote_undecided() -> None:
    def result(champion_requests: int, passed: bool | None = None) -> CheckResult:
        ev = Evidence(
            check="error_rate", test="sprt", champion_requests=champion_requests, floor=20
        )
        return CheckResult("error_rate", passed, 0.0, 3.9, evidence=ev)

    plain = CheckResult("latency_quantile", None, None, 2.0)  # no evidence: never holds
    assert undecided([result(30), plain], 50.0) == ["error_rate"]
    assert undecided([result(5)], 50.0) == ["error_rate"]  # more steps will bring samples
    assert undecided([result(30)], 100.0) == ["error_rate"]  # more challenger calls decide
    assert undecided([result(5)], 100.0) == []  # no more champion samples are coming
    assert undecided([result(30, passed=True)], 50.0) == []
