"""The controller's round: the drift monitor is asked outside the lock.

A CI run once saw a saturated box starve the drift monitor; the controller, waiting for its
answer inside the lock, then held every admin read and the ingress's route poll for two
minutes at a time. The round now asks first, unlocked, and hands the answers to the tick.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from model_registry.settings import RegistryRef
from serving.config import load_config
from serving.rollouts.controller.actor import RolloutController
from serving.rollouts.evidence import DriftEvidence, EvidencePending
from tests.unit.serving.rollouts.conftest import SPEC, traffic

pytestmark = pytest.mark.usefixtures("prediction_drift")

DRIFTED = DriftEvidence.model_validate(
    {
        "pairs": 40,
        "vs_champion": {
            "report_id": "detector-v2-challenger-vs-champion-r1",
            "status": "drift",
            "drift_share": 1.0,
            "drifted_features": ["pred_count"],
            "reference_rows": 40,
            "current_rows": 40,
        },
    }
)
DRIFT_SPEC = {
    **SPEC,
    "checks": [{"name": "prediction_drift", "threshold": 0.5, "min_samples": 25}],
}


def _controller(setup: Any, tmp_path: Path, drift: Any) -> RolloutController:
    """A controller around the test's manager (real stores, recording deployer)."""
    manager = setup[0]
    manager.drift = drift
    registry = RegistryRef(
        tracking_uri=f"sqlite:///{tmp_path / 'unused.db'}", data_dir=str(tmp_path / "unused")
    )
    controller = RolloutController(load_config(), registry)
    controller.manager = controller.target = manager
    return controller


def test_admin_reads_go_through_while_the_monitor_is_measuring(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    entered, release = threading.Event(), threading.Event()
    asked: list[tuple[Any, ...]] = []

    def slow(*ask: Any) -> DriftEvidence:
        asked.append(ask)
        entered.set()
        assert release.wait(10)
        return DRIFTED

    controller = _controller(setup, tmp_path, slow)
    manager, _store, _deployer, clock = setup
    rid = manager.start(DRIFT_SPEC)["id"]
    manager.tick()  # the challenger is ready: the rollout is judged from now on
    assert manager.drift_asks() == {}  # mid-window: the monitor is not asked
    clock.now += 11  # the window is due: its closing look asks
    round_ = threading.Thread(target=controller.round)
    round_.start()
    try:
        assert entered.wait(5)
        seen: list[dict[str, Any]] = []
        reader = threading.Thread(
            target=lambda: seen.append(controller._locked(manager.describe, rid))
        )
        reader.start()
        reader.join(5)
        assert seen and seen[0]["state"] == "progressing"  # not queued behind the monitor
        assert controller._locked(manager.routes)["detector"].weight == 50
    finally:
        release.set()
        round_.join(10)
    assert not round_.is_alive()
    assert manager.drift_asks() == {rid: ("detector", 1, 2, asked[0][3], 25)} and len(asked) == 1

    # What the round fetched is what the tick judges: two drifted windows roll it back, and
    # the monitor is asked once per round, not again by the tick.
    for n in (2, 3):
        clock.now += 11
        traffic(manager, rid, clock.now - 1, challenger_errors=False)
        controller.round()
        assert len(asked) == n
    done = manager.describe(rid)
    assert done["state"] == "rolled_back" and done["ended_reason"] == "prediction_drift"


def test_a_measurement_still_running_holds_the_window_until_the_progress_deadline(
    setup, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A loaded box's monitor (lowest priority) may take longer than a window: the window
    waits for its measurement instead of closing without it (a CI run once closed eight
    windows in a row on "no drift data yet"). Past the deadline it closes without it: no
    evidence is not a failure."""
    busy = [True]
    asked: list[tuple[Any, ...]] = []

    def source(*ask: Any) -> DriftEvidence:
        asked.append(ask)
        if busy[0]:
            raise EvidencePending("the drift monitor is still measuring detector v2")
        return DRIFTED

    controller = _controller(setup, tmp_path, source)
    manager, _store, _deployer, clock = setup
    spec = {**DRIFT_SPEC, "progress_deadline": "55s"}
    rid = manager.start(spec)["id"]
    controller.round()
    for _ in range(3):
        clock.now += 11
        traffic(manager, rid, clock.now - 1, challenger_errors=False)
        controller.round()
    held = manager.describe(rid)
    assert held["state"] == "progressing" and held["step_index"] == 0
    assert len({a[3] for a in asked}) == 1  # one window, asked again at every look
    busy[0] = False  # the measurement is in: the held window is judged on it
    clock.now += 1
    controller.round()
    judged = manager.describe(rid)["events"][-1]
    assert judged["kind"] == "undecided" and judged["detail"]["samples"]["window_s"] > 30
    drift = next(x for x in judged["detail"]["results"] if x["name"] == "prediction_drift")
    assert drift["detail"].startswith("1 of 1 windows drifted")
    # Still measuring past the deadline: the window closes without it, counting nothing.
    busy[0] = True
    for _ in range(5):
        clock.now += 11
        traffic(manager, rid, clock.now - 1, challenger_errors=False)
        controller.round()
    assert manager.describe(rid)["events"][-1] == judged  # held: 55 s, at the deadline
    clock.now += 11
    traffic(manager, rid, clock.now - 1, challenger_errors=False)
    controller.round()
    closed = manager.describe(rid)["events"][-1]
    assert closed["kind"] == "undecided" and closed["detail"]["samples"]["window_s"] > 55
    drift = next(x for x in closed["detail"]["results"] if x["name"] == "prediction_drift")
    assert (
        drift["detail"].startswith("1 of 1 windows drifted")
        and "still measuring" in drift["detail"]
    )


def test_only_judged_rollouts_with_the_check_and_a_source_are_asked(setup) -> None:  # type: ignore[no-untyped-def]
    manager, _store, deployer, _clock = setup
    deployer.instant = False  # the challenger is still deploying: the rollout is pending
    rid = manager.start(DRIFT_SPEC)["id"]
    manager.tick()
    assert manager.drift_asks() == {}  # no drift source
    manager.drift = lambda *ask: None
    _clock.now += 10  # due, but still deploying: nothing to judge yet
    assert manager.describe(rid)["state"] == "pending" and manager.drift_asks() == {}
    deployer.running.add(("detector", 2))
    manager.tick()
    assert manager.drift_asks() == {}  # the window is not due yet
    _clock.now += 10
    ask = manager.drift_asks()[rid]
    assert ask[:3] == ("detector", 1, 2) and ask[4] == 25
    manager.drift = None
    assert manager.drift_asks() == {}
    manager.drift = lambda *ask: None
    manager.pause(rid)
    assert manager.drift_asks() == {}
    manager.resume(rid)
    assert manager.drift_asks() == {}  # a resumed rollout opens a new window
    _clock.now += 10
    assert list(manager.drift_asks()) == [rid]
    manager.abort(rid)
    assert manager.drift_asks() == {}  # ended rollouts are not asked about


def test_a_rollout_without_the_check_is_not_asked(setup) -> None:  # type: ignore[no-untyped-def]
    manager, _store, _deployer, _clock = setup
    manager.drift = lambda *ask: None
    off = {**DRIFT_SPEC, "checks": [{**DRIFT_SPEC["checks"][0], "enabled": False}]}
    manager.start(off)
    manager.tick()
    assert manager.drift_asks() == {}


def test_each_ask_gets_its_own_answer_and_a_failing_one_hides_no_other(
    setup, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    manager = setup[0]
    asks = {f"ro-{n}": ("detector", 1, n, 1000.0, 20) for n in (2, 3, 4, 5, 6, 7)}

    def source(model: str, champion: int, challenger: int, since: float, rows: int) -> Any:
        if challenger == 2:
            raise EvidencePending("still measuring")
        if challenger == 3:
            raise ConnectionError("monitor restarting")
        if challenger == 4:
            return None
        if challenger == 6:
            raise TimeoutError("ray.get timed out")  # a plain timeout is a failure
        return DriftEvidence(pairs=challenger)

    assert manager.fetch_drift(asks) == {}  # no source: nothing is asked
    manager.drift = source
    with caplog.at_level(logging.INFO, logger="canaryserve.controller"):
        got = manager.fetch_drift(asks)
    assert got == {
        asks["ro-2"]: DriftEvidence(pending=True),
        asks["ro-5"]: DriftEvidence(pairs=5),
        asks["ro-7"]: DriftEvidence(pairs=7),
    }
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "rollout ro-2: no drift evidence yet: still measuring"),
        (
            logging.WARNING,
            "rollout ro-3: drift monitor unavailable: ConnectionError('monitor restarting')",
        ),
        (
            logging.WARNING,
            "rollout ro-6: drift monitor unavailable: TimeoutError('ray.get timed out')",
        ),
    ]
