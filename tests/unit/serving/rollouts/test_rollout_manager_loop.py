"""RolloutManager's loop: when it asks for replicas, when it drains, what it logs.

Same set-up as ``test_rollout_manager`` (conftest): real MLflow and rollout stores, an
injected clock, a deployer that records its calls.
"""

from __future__ import annotations

import logging

import pytest

from serving.rollouts.evidence import DriftEvidence
from tests.unit.serving.rollouts.conftest import SPEC, fail_the_first_step, traffic

pytestmark = pytest.mark.usefixtures("prediction_drift")


def test_a_rolled_back_challenger_drains_after_the_delay_not_before(setup) -> None:  # type: ignore[no-untyped-def]
    manager, _store, deployer, clock = setup
    rid = fail_the_first_step(manager, clock)  # v2 drains in 5 s
    assert manager.describe(rid)["state"] == "rolled_back"
    clock.now += 4.999
    manager.tick()
    assert deployer.retired == [] and deployer.ready("detector", 2)  # still draining
    clock.now += 0.001
    manager.tick()
    assert deployer.retired == [("detector", 2)]


def test_a_challenger_whose_replicas_are_up_is_not_asked_for_again(setup) -> None:  # type: ignore[no-untyped-def]
    manager, _store, deployer, clock = setup
    manager.start(SPEC)
    manager.tick()  # pending -> progressing: its replicas are up
    asked = list(deployer.ensured)
    for _ in range(3):
        clock.now += 1
        manager.tick()
    assert deployer.ensured == asked


def test_a_paused_rollout_does_not_ask_the_drift_monitor(setup) -> None:  # type: ignore[no-untyped-def]
    manager, _store, _deployer, clock = setup
    asked: list[tuple[object, ...]] = []

    def drift(*args: object) -> DriftEvidence | None:
        asked.append(args)
        return None

    manager.drift = drift
    rid = manager.start({**SPEC, "checks": [{"name": "prediction_drift", "threshold": 0.5}]})["id"]
    manager.tick()
    manager.pause(rid)
    clock.now += 11
    traffic(manager, rid, clock.now - 1, challenger_errors=False)
    manager.tick()
    assert asked == []  # the report would be computed for nothing: nothing is judged
    manager.resume(rid)
    clock.now += 11
    traffic(manager, rid, clock.now - 1, challenger_errors=False)
    manager.tick()
    assert len(asked) == 1


def test_an_unexpected_tick_failure_is_logged_with_its_rollout_and_traceback(
    setup, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    manager, _store, deployer, _clock = setup
    rid = manager.start(SPEC)["id"]

    def broken(model: str, version: int) -> bool:
        raise RuntimeError("serve controller unreachable")

    deployer.ready = broken
    with caplog.at_level(logging.ERROR, logger="canaryserve.controller"):
        manager.tick()
    [record] = caplog.records
    assert record.getMessage() == f"rollout {rid}: tick failed"
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError


def test_drains_that_are_skipped_or_fail_are_logged_with_the_version(
    setup, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    manager, _store, deployer, clock = setup
    manager.abort(manager.start(SPEC)["id"])  # v2 drains in 5 s ...
    manager.start(SPEC)  # ... but is the challenger again
    clock.now += 5
    with caplog.at_level(logging.WARNING, logger="canaryserve.controller"):
        manager.tick()
    assert [r.getMessage() for r in caplog.records] == [
        "not retiring detector v2: it is in use again"
    ]
    caplog.clear()

    def refused(model: str, version: int) -> None:
        raise RuntimeError("app is being deleted")

    deployer.retire = refused
    manager.abort(manager.list(active_only=True)[0]["id"])
    clock.now += 5
    with caplog.at_level(logging.WARNING, logger="canaryserve.controller"):
        manager.tick()
    [record] = caplog.records
    assert record.getMessage() == "retiring detector v2 failed"
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
