"""RolloutManager's commands and bookkeeping: who did what, the registry's tags, drains.

Same set-up as ``test_rollout_manager`` (conftest): real MLflow and rollout stores, an
injected clock starting at 1970-01-12T13:46:40Z, a deployer that records its calls.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.errors import InvalidRolloutSpec, UnknownModelVersion
from serving.rollouts.evidence import DriftEvidence
from serving.rollouts.manager import RolloutManager
from tests.unit.model_registry.test_validate import write_detector_dir
from tests.unit.serving.rollouts.conftest import SPEC, fail_the_first_step, traffic

pytestmark = pytest.mark.usefixtures("prediction_drift")
T0_ISO = "1970-01-12T13:46:40+00:00"  # the clock's start


def _kinds_and_actors(manager: RolloutManager, rid: str) -> list[tuple[str, str | None]]:
    return [(e["kind"], e["detail"].get("actor")) for e in manager.describe(rid)["events"]]


def test_manual_pause_resume_and_promote_name_who_did_them_and_tag_both_versions(setup) -> None:  # type: ignore[no-untyped-def]
    manager, store, deployer, clock = setup
    rid = manager.start(SPEC, actor="alice")["id"]
    manager.tick()
    assert manager.pause(rid, actor="bob")["state"] == "paused"
    assert manager.resume(rid, actor="carol")["state"] == "progressing"
    clock.now += 30
    done = manager.promote(rid, actor="dave")
    assert (done["state"], done["ended_reason"], done["weight"]) == (
        "promoted",
        "manual_promotion",
        100.0,
    )
    assert _kinds_and_actors(manager, rid) == [
        ("started", "alice"),
        ("step", None),  # the controller's own move
        ("paused", "bob"),
        ("resumed", "carol"),
        ("promoted", "dave"),
    ]
    assert store.aliases("detector") == {"champion": 2}
    old, new = store.get("detector/1").tags, store.get("detector/2").tags
    assert old["canaryserve.replaced_by"] == "2"
    assert old["canaryserve.replaced_reason"] == f"rollout {rid}: manual_promotion"
    assert old["canaryserve.replaced_at"] == "1970-01-12T13:47:10+00:00"
    assert new["canaryserve.promoted_at"] == "1970-01-12T13:47:10+00:00"
    assert new["canaryserve.promoted_by_rollout"] == rid
    assert manager.routes() == {}
    # The old champion drains exactly drain_delay_s (5 s) after the promotion.
    clock.now += 4.9
    manager.tick()
    assert deployer.retired == []
    clock.now += 0.1
    manager.tick()
    assert deployer.retired == [("detector", 1)]
    clock.now += 60
    manager.tick()
    assert deployer.retired == [("detector", 1)]  # a drain runs once


def test_an_automatic_promotion_gives_its_reason(setup) -> None:  # type: ignore[no-untyped-def]
    manager, store, _deployer, clock = setup
    rid = manager.start({**SPEC, "step_weights": [100]})["id"]
    manager.tick()
    clock.now += 11
    traffic(manager, rid, clock.now - 1, challenger_errors=False)
    manager.tick()
    assert manager.describe(rid)["ended_reason"] == "checks_passed"
    reason = store.get("detector/1").tags["canaryserve.replaced_reason"]
    assert reason == f"rollout {rid}: checks_passed"


def test_a_failed_check_tags_the_challenger_with_value_threshold_rollout_and_time(setup) -> None:  # type: ignore[no-untyped-def]
    manager, store, deployer, clock = setup
    rid = fail_the_first_step(manager, clock)
    tags = store.get("detector/2").tags
    assert tags["canaryserve.rollback.check"] == "error_rate"
    assert tags["canaryserve.rollback.value"] == "1"
    assert tags["canaryserve.rollback.threshold"] == "0.05"  # the default error_rate threshold
    assert tags["canaryserve.rollback.rollout_id"] == rid
    assert tags["canaryserve.rollback.at"] == "1970-01-12T13:46:51+00:00"
    assert "canaryserve.rollback.report_id" not in tags  # only drift checks have reports
    assert "canaryserve.replaced_by" not in store.get("detector/1").tags
    # The loser drains, not the champion.
    clock.now += 5
    manager.tick()
    assert deployer.retired == [("detector", 2)]


def test_an_abort_tags_the_reason_without_a_measurement(setup) -> None:  # type: ignore[no-untyped-def]
    manager, store, deployer, clock = setup
    rid = manager.start(SPEC, actor="erin")["id"]
    manager.tick()
    done = manager.abort(rid, actor="erin")
    assert (done["state"], done["ended_reason"]) == ("aborted", "aborted")
    assert _kinds_and_actors(manager, rid)[-1] == ("aborted", "erin")
    assert store.aliases("detector") == {"champion": 1}
    tags = store.get("detector/2").tags
    assert tags["canaryserve.rollback.check"] == "aborted"
    assert tags["canaryserve.rollback.at"] == T0_ISO
    assert "canaryserve.rollback.value" not in tags
    assert "canaryserve.rollback.threshold" not in tags
    clock.now += 5
    manager.tick()
    assert deployer.retired == [("detector", 2)]


def test_list_shows_every_rollout_or_only_the_active_ones(setup) -> None:  # type: ignore[no-untyped-def]
    manager, *_ = setup
    first = manager.start(SPEC)["id"]
    manager.abort(first)
    second = manager.start(SPEC)["id"]
    assert sorted(r["id"] for r in manager.list()) == sorted([first, second])
    assert [r["id"] for r in manager.list(active_only=True)] == [second]
    # Ids name the model and version, then 8 hex digits (unique per start).
    prefix, _, suffix = second.rpartition("-")
    assert prefix == "detector-v2" and len(suffix) == 8 and int(suffix, 16) >= 0
    assert first != second


def test_start_refuses_what_it_cannot_compare(setup) -> None:  # type: ignore[no-untyped-def]
    manager, store, deployer, _clock = setup
    with pytest.raises(InvalidRolloutSpec, match="detector v1 is already the champion"):
        manager.start({**SPEC, "challenger_version": 1})
    with pytest.raises(UnknownModelVersion):
        manager.start({**SPEC, "challenger_version": 9})
    store.delete_alias("detector", "champion")
    with pytest.raises(InvalidRolloutSpec, match="'detector' has no champion alias"):
        manager.start(SPEC)
    # Nothing was created, aliased or deployed by a refused start.
    assert manager.list() == [] and store.aliases("detector") == {}
    assert deployer.ensured == []


def test_a_pending_rollout_waits_for_its_replicas_and_keeps_asking_for_them(setup) -> None:  # type: ignore[no-untyped-def]
    manager, _store, deployer, clock = setup
    deployer.instant = False
    rid = manager.start(SPEC)["id"]
    assert deployer.ensured == [("detector", 2)]
    for _ in range(2):
        clock.now += 30
        manager.tick()
    assert manager.describe(rid)["state"] == "pending" and manager.routes() == {}
    assert deployer.ensured == [("detector", 2)] * 3
    deployer.running.add(("detector", 2))
    manager.tick()
    assert manager.describe(rid)["state"] == "progressing"
    assert manager.routes()["detector"].weight == 50


def test_a_paused_canary_gets_its_replicas_back_but_is_not_judged(setup) -> None:  # type: ignore[no-untyped-def]
    manager, _store, deployer, clock = setup
    rid = manager.start(SPEC)["id"]
    manager.tick()
    manager.pause(rid)
    deployer.running.discard(("detector", 2))  # it still routes 50 %: it needs its replicas
    clock.now += 11
    traffic(manager, rid, clock.now - 1, challenger_errors=True)
    manager.tick()
    assert deployer.ready("detector", 2)
    assert manager.describe(rid)["state"] == "paused"  # failing calls while paused: no verdict


def test_one_rollout_failing_to_tick_does_not_stop_the_drains(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    manager, store, deployer, clock = setup
    store.register(write_detector_dir(tmp_path / "v3"), description="v3")
    manager.abort(manager.start(SPEC)["id"])  # v2 drains in 5 s
    manager.start({**SPEC, "challenger_version": 3})

    def broken(model: str, version: int) -> bool:
        raise RuntimeError("serve controller unreachable")

    deployer.ready = broken
    clock.now += 5
    manager.tick()  # the v3 rollout's tick raises; the loop goes on
    assert deployer.retired == [("detector", 2)]


def test_the_drift_check_uses_the_rollouts_sample_floor_unless_it_has_its_own(setup) -> None:  # type: ignore[no-untyped-def]
    manager, _store, _deployer, clock = setup
    asked: list[tuple[object, ...]] = []

    def drift(*args: object) -> DriftEvidence | None:
        asked.append(args)
        return None  # not enough pairs yet: no verdict

    manager.drift = drift
    checks = [
        {"name": "error_rate", "threshold": 0.05, "method": "window"},
        {"name": "prediction_drift", "threshold": 0.5},
    ]
    rid = manager.start({**SPEC, "checks": checks})["id"]
    manager.tick()
    started = manager.describe(rid)["phase_started_at"]
    clock.now += 11
    traffic(manager, rid, clock.now - 1, challenger_errors=False)
    manager.tick()
    assert asked == [("detector", 1, 2, started, 3)]  # SPEC's min_requests
    # No evidence is no verdict: the step passed on the other checks.
    assert manager.describe(rid)["step_index"] == 1


def test_a_disabled_drift_check_does_not_ask_the_monitor(setup) -> None:  # type: ignore[no-untyped-def]
    manager, _store, _deployer, clock = setup
    asked: list[tuple[object, ...]] = []
    manager.drift = lambda *args: asked.append(args)
    checks = [{"name": "prediction_drift", "threshold": 0.5, "enabled": False}]
    rid = manager.start({**SPEC, "checks": checks})["id"]
    manager.tick()
    clock.now += 11
    traffic(manager, rid, clock.now - 1, challenger_errors=False)
    manager.tick()
    assert asked == [] and manager.describe(rid)["step_index"] == 1


def test_an_ended_rollouts_measurements_are_forgotten(setup) -> None:  # type: ignore[no-untyped-def]
    manager, *_ = setup
    rid = manager.start(SPEC)["id"]
    manager.tick()
    traffic(manager, rid, 0.0, challenger_errors=False)
    assert manager.stats.window(rid, 0.0).challenger.requests == 5
    manager.abort(rid)
    assert manager.stats.window(rid, 0.0).challenger.requests == 0


def test_commands_without_an_actor_say_unknown(setup) -> None:  # type: ignore[no-untyped-def]
    manager, *_ = setup
    rid = manager.start(SPEC)["id"]
    manager.tick()
    manager.pause(rid)
    manager.resume(rid)
    manager.promote(rid)
    assert [actor for kind, actor in _kinds_and_actors(manager, rid) if kind != "step"] == [
        "unknown"
    ] * 4
    rid = manager.start({**SPEC, "challenger_version": 1})["id"]
    manager.abort(rid)
    assert _kinds_and_actors(manager, rid)[-1] == ("aborted", "unknown")


def test_a_pending_rollout_of_one_model_does_not_hide_another_models_route(
    setup, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    manager, store, deployer, clock = setup
    for i in (1, 2):
        d = write_detector_dir(tmp_path / f"second-v{i}")
        (d / "manifest.yaml").write_text(
            (d / "manifest.yaml").read_text().replace("name: detector", "name: second")
        )
        store.register(d, description=f"second v{i}")
    store.set_alias("second", "champion", 1)
    deployer.instant = False
    manager.start({**SPEC, "model": "second"})  # stays pending
    clock.now += 1  # the store lists oldest first: "second" comes before "detector"
    rid = manager.start(SPEC)["id"]
    assert [r["spec"]["model"] for r in manager.list()] == ["second", "detector"]
    deployer.running.add(("detector", 2))
    manager.tick()
    routes = manager.routes()
    assert list(routes) == ["detector"] and routes["detector"].rollout_id == rid


def test_an_ended_rollouts_challenger_is_not_brought_back_after_its_drain(setup) -> None:  # type: ignore[no-untyped-def]
    manager, _store, deployer, clock = setup
    manager.abort(manager.start(SPEC)["id"])
    clock.now += 5
    manager.tick()
    assert deployer.retired == [("detector", 2)]
    ensured = len(deployer.ensured)
    for _ in range(3):
        clock.now += 1
        manager.tick()
    assert len(deployer.ensured) == ensured and not deployer.ready("detector", 2)


def test_a_stale_drain_never_retires_the_champion(setup) -> None:  # type: ignore[no-untyped-def]
    manager, store, deployer, clock = setup
    manager.abort(manager.start(SPEC)["id"])  # v2 drains in 5 s ...
    again = manager.start(SPEC)["id"]
    manager.tick()
    manager.promote(again)  # ... but v2 is the champion by then (and v1 drains in 5 s)
    clock.now += 5
    manager.tick()
    assert store.aliases("detector") == {"champion": 2}
    assert deployer.retired == [("detector", 1)] and deployer.ready("detector", 2)


def test_a_failing_tick_is_logged_with_its_rollout(setup, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    from serving.errors import CanaryError

    manager, _store, deployer, _clock = setup
    rid = manager.start(SPEC)["id"]

    def unreachable(model: str, version: int) -> bool:
        raise CanaryError("serve controller unreachable")

    deployer.ready = unreachable
    with caplog.at_level("ERROR", logger="canaryserve.controller"):
        manager.tick()
    assert [r.getMessage() for r in caplog.records] == [
        f"rollout {rid}: serve controller unreachable"
    ]


def test_an_unreachable_drift_monitor_is_logged_with_its_rollout(
    setup, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    manager, _store, _deployer, clock = setup

    def down(*args: object) -> None:
        raise TimeoutError("monitor restarting")

    manager.drift = down
    checks = [{"name": "prediction_drift", "threshold": 0.5}]
    rid = manager.start({**SPEC, "checks": checks})["id"]
    manager.tick()
    clock.now += 11
    traffic(manager, rid, clock.now - 1, challenger_errors=False)
    with caplog.at_level("WARNING", logger="canaryserve.controller"):
        manager.tick()
    assert [r.getMessage() for r in caplog.records] == [
        f"rollout {rid}: drift monitor unavailable: TimeoutError('monitor restarting')"
    ]
