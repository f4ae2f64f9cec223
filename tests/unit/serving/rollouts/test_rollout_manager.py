"""RolloutManager without Ray: real MLflow store, real SQLite rollout store, injected clock.

The deployer is the Ray boundary; here it records what it was asked to do.
"""

from __future__ import annotations

import pytest

from serving.canary.records import RolloutRecord
from serving.errors import RolloutConflict
from serving.rollouts.controller.store import RolloutStore
from serving.rollouts.evidence import DriftEvidence
from serving.rollouts.manager import RolloutManager
from tests.unit.serving.rollouts.conftest import SPEC, fail_the_first_step, traffic

pytestmark = pytest.mark.usefixtures("prediction_drift")


def test_promotion_moves_aliases_tags_and_drains_the_old_champion(setup) -> None:  # type: ignore[no-untyped-def]
    manager, store, deployer, clock = setup
    rid = manager.start(SPEC, actor="alice")["id"]
    assert store.aliases("detector") == {"champion": 1, "challenger": 2}
    manager.tick()  # challenger ready -> step 0 (weight 50)
    assert manager.routes()["detector"].weight == 50
    for _ in range(2):  # step 50 passes, then step 100 passes -> promoted
        clock.now += 11
        traffic(manager, rid, clock.now - 1, challenger_errors=False)
        manager.tick()
    done = manager.describe(rid)
    assert done["state"] == "promoted", done
    assert store.aliases("detector") == {"champion": 2}
    old = store.get("detector/1").tags
    assert old["canaryserve.replaced_by"] == "2" and rid in old["canaryserve.replaced_reason"]
    assert done["events"][0]["detail"]["actor"] == "alice"
    assert manager.routes() == {}
    clock.now += 6
    manager.tick()
    assert deployer.retired == [("detector", 1)]


def test_failed_check_rolls_back_with_the_measured_value(setup) -> None:  # type: ignore[no-untyped-def]
    manager, store, _deployer, clock = setup
    rid = fail_the_first_step(manager, clock)
    done = manager.describe(rid)
    assert done["state"] == "rolled_back" and done["ended_reason"] == "error_rate"
    tags = store.get("detector/2").tags
    assert tags["canaryserve.rollback.check"] == "error_rate"
    assert float(tags["canaryserve.rollback.value"]) == 1.0
    assert store.aliases("detector") == {"champion": 1}


def test_a_stale_drain_does_not_retire_a_version_in_use_again(setup) -> None:  # type: ignore[no-untyped-def]
    manager, _store, deployer, clock = setup
    first = manager.start(SPEC)["id"]
    manager.tick()
    manager.abort(first)  # schedules a drain of v2 in 5 s
    manager.start(SPEC)  # ... but v2 is the challenger again
    clock.now += 6
    manager.tick()
    assert ("detector", 2) not in deployer.retired and deployer.ready("detector", 2)


def test_one_active_rollout_per_model(setup) -> None:  # type: ignore[no-untyped-def]
    manager, store, *_ = setup
    first = manager.start(SPEC)["id"]
    with pytest.raises(RolloutConflict, match="already has an active rollout") as refused:
        manager.start(SPEC)
    # The refusal names the rollout in the way, and the refused start left nothing behind.
    assert refused.value.details == {"model": "detector", "rollout_id": first}
    assert first in refused.value.message
    assert [r["id"] for r in manager.list()] == [first]
    assert store.aliases("detector") == {"champion": 1, "challenger": 2}


def test_prediction_drift_rolls_back_and_records_the_report_id(setup) -> None:  # type: ignore[no-untyped-def]
    manager, store, _deployer, clock = setup
    asked: list[tuple[object, ...]] = []

    def drift(*args: object) -> DriftEvidence:
        asked.append(args)
        return DriftEvidence.model_validate(
            {
                "pairs": 40,
                "vs_champion": {
                    "report_id": "detector-v2-challenger-vs-champion-abc",
                    "status": "drift",
                    "drift_share": 0.75,
                    "drifted_features": [
                        "pred_count",
                        "pred_mean_confidence",
                        "pred_min_confidence",
                    ],
                    "reference_rows": 40,
                    "current_rows": 40,
                },
            }
        )

    manager.drift = drift
    spec = {
        **SPEC,
        "checks": [
            {"name": "error_rate", "threshold": 0.05},
            {"name": "prediction_drift", "threshold": 0.5, "min_samples": 25},
        ],
    }
    rid = manager.start(spec)["id"]
    manager.tick()
    # Sequential (the default): a drifted window counts once, at its close; the second fails.
    for state in ("progressing", "rolled_back"):
        clock.now += 11
        traffic(manager, rid, clock.now - 1, challenger_errors=False)
        manager.tick()
        assert manager.describe(rid)["state"] == state
    done = manager.describe(rid)
    assert done["ended_reason"] == "prediction_drift"
    # The monitor was asked about this rollout's window with the check's own sample floor.
    model, champion, challenger, _since, min_rows = asked[-1]
    assert (model, champion, challenger, min_rows) == ("detector", 1, 2, 25)
    tags = store.get("detector/2").tags
    assert tags["canaryserve.rollback.check"] == "prediction_drift"
    assert tags["canaryserve.rollback.report_id"] == "detector-v2-challenger-vs-champion-abc"
    rolled = next(e for e in done["events"] if e["kind"] == "rolled_back")
    assert rolled["detail"]["check"]["report_id"] == "detector-v2-challenger-vs-champion-abc"


def test_an_unreachable_drift_monitor_is_no_verdict_not_a_failure(setup) -> None:  # type: ignore[no-untyped-def]
    manager, _store, _deployer, clock = setup

    def down(*args: object) -> None:
        raise TimeoutError("monitor restarting")

    manager.drift = down
    spec = {**SPEC, "checks": [{"name": "prediction_drift", "threshold": 0.5}]}
    rid = manager.start(spec)["id"]
    manager.tick()
    for _ in range(2):
        clock.now += 11
        traffic(manager, rid, clock.now - 1, challenger_errors=False)
        manager.tick()
    assert manager.describe(rid)["state"] == "promoted"


SHADOW_SPEC = {
    **SPEC,
    "mode": "shadow-then-canary",
    "shadow_share": 0.5,
    "shadow_steps": 2,
    "shadow_max_concurrency": 3,
}


def test_shadow_and_paused_rollouts_route_the_weight_their_state_allows(setup) -> None:  # type: ignore[no-untyped-def]
    manager, _store, _deployer, _clock = setup
    rid = manager.start(SHADOW_SPEC)["id"]
    assert manager.routes() == {}  # pending: the challenger is not ready, nothing to route
    manager.tick()
    route = manager.routes()["detector"]
    assert (route.state, route.weight, route.shadow_share) == ("shadow", 0.0, 0.5)
    assert (route.rollout_id, route.champion, route.challenger) == (rid, 1, 2)
    assert route.shadow_max_concurrency == 3
    # Paused while shadowing: still no live traffic, still mirrored.
    manager.pause(rid)
    route = manager.routes()["detector"]
    assert (route.state, route.weight, route.shadow_share) == ("paused", 0.0, 0.5)
    manager.abort(rid)
    # A paused canary keeps its step's weight; a plain canary mirrors nothing.
    rid = manager.start(SPEC)["id"]
    manager.tick()
    manager.pause(rid)
    route = manager.routes()["detector"]
    assert (route.state, route.weight, route.shadow_share) == ("paused", 50.0, 0.0)


def test_a_restarted_controller_starts_the_windows_in_progress_again(setup, tmp_path) -> None:  # type: ignore[no-untyped-def]
    manager, store, deployer, clock = setup
    rid = manager.start({**SPEC, "progress_deadline": "60s"})["id"]
    manager.tick()
    # The controller is down for longer than the progress deadline: its stats are gone.
    clock.now += 120
    again = RolloutManager(
        RolloutStore(tmp_path / "rollouts.db"), store, deployer, clock=clock, drain_delay_s=5
    )
    again.tick()
    # The downtime counts neither as data nor against the deadline: the step goes on ...
    r = again.describe(rid)
    assert (r["state"], r["step_index"]) == ("progressing", 0), r
    # ... and is judged on what arrives after the restart.
    clock.now += 11
    traffic(again, rid, clock.now - 1, challenger_errors=False)
    again.tick()
    assert again.describe(rid)["step_index"] == 1


def test_a_running_rollout_brings_back_a_challenger_whose_replicas_went_away(setup) -> None:  # type: ignore[no-untyped-def]
    manager, _store, deployer, _clock = setup
    rid = manager.start(SPEC)["id"]
    manager.tick()
    deployer.running.discard(("detector", 2))  # its app was deleted under the rollout
    manager.tick()
    assert deployer.ready("detector", 2)
    assert manager.describe(rid)["state"] == "progressing"


def _storm(manager: RolloutManager, rid: str, now: float) -> None:
    """20 honest keys, one clean call each per arm; one attacker key, 10 failing calls."""

    def call(arm: str, key: str, ok: bool) -> RolloutRecord:
        return RolloutRecord(rid, "detector", now, "call", arm, ok, 10.0, key_hash=key)  # type: ignore[arg-type]

    honest = [call(arm, f"user-{i}", True) for i in range(20) for arm in ("champion", "challenger")]
    manager.report(honest + [call("challenger", "mallory", False) for _ in range(10)])


@pytest.mark.parametrize(("per_key", "state"), [(1, "progressing"), (20, "rolled_back")])
def test_one_key_counts_at_most_max_requests_per_key_per_window(  # type: ignore[no-untyped-def]
    setup, per_key: int, state: str
) -> None:
    manager, _store, _deployer, clock = setup
    rid = manager.start({**SPEC, "max_requests_per_key": per_key})["id"]
    manager.tick()
    clock.now += 11
    _storm(manager, rid, clock.now - 1)
    manager.tick()
    r = manager.describe(rid)
    # Capped at one, the attacker's 10 failures weigh 1 in 21 (under 0.05): the step passes.
    assert r["state"] == state, r
    assert (r["weight"] == 100.0) is (state == "progressing")
