"""``offline_accuracy``: the challenger judged against labelled truth, not against the champion."""

from __future__ import annotations

import pytest

from model_registry.evaluation.labelled_actions import LabelledAccuracy, VersionScore
from serving.rollouts import checks
from serving.rollouts.checks import CheckSpec, WindowStats, register_check
from serving.rollouts.manager import RolloutManager
from serving.rollouts.offline import OfflineAccuracyCheck
from tests.unit.serving.rollouts.conftest import SPEC, traffic


@pytest.fixture(autouse=True)
def offline_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "CHECKS", dict(checks.CHECKS))
    register_check(OfflineAccuracyCheck())


def scores(champion: float, challenger: float, tracks: int = 32) -> LabelledAccuracy:
    def one(version: int, balanced: float) -> VersionScore:
        return VersionScore(
            version=version,
            balanced_accuracy=balanced,
            accuracy=balanced,
            per_label={"walking": balanced},
            mean_confidence=0.7,
        )

    return LabelledAccuracy(tracks=tracks, champion=one(1, champion), challenger=one(2, challenger))


def judge(evidence: object, threshold: float = 0.0, min_samples: int | None = None):  # type: ignore[no-untyped-def]
    stats = WindowStats()
    if evidence is not None:
        stats.extra["offline_accuracy"] = evidence
    spec = CheckSpec(name="offline_accuracy", threshold=threshold, min_samples=min_samples)
    return OfflineAccuracyCheck().evaluate(stats, spec, min_requests=3)


def test_a_better_challenger_passes_and_a_worse_one_fails() -> None:
    better = judge(scores(0.55, 0.80))
    assert better.passed is True and better.value == pytest.approx(0.25)
    assert "challenger v2 0.800, champion v1 0.550" in better.detail
    worse = judge(scores(0.80, 0.79))
    assert worse.passed is False and worse.value == pytest.approx(-0.01)


def test_threshold_is_the_drop_allowed() -> None:
    assert judge(scores(0.80, 0.75), threshold=0.05).passed is True
    assert judge(scores(0.80, 0.7499), threshold=0.05).passed is False


def test_abstains_without_evidence_or_enough_tracks() -> None:
    assert judge(None).passed is None
    assert judge(scores(0.5, 0.9, tracks=9)).passed is None  # default floor: 10 tracks
    assert judge(scores(0.5, 0.9, tracks=9), min_samples=5).passed is True


def test_threshold_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match="balanced-accuracy drop allowed"):
        CheckSpec(name="offline_accuracy", threshold=1.5)


def test_the_manager_scores_once_per_rollout_and_promotes_the_better_model(setup) -> None:  # type: ignore[no-untyped-def]
    manager, store, _deployer, clock = setup
    asked: list[tuple[object, ...]] = []

    def offline(registry: object, model: str, champion: int, challenger: int) -> LabelledAccuracy:
        asked.append((registry, model, champion, challenger))
        return scores(0.5, 0.9)

    # Handed in as the controller actor does (the other tests swap the attribute).
    manager = RolloutManager(
        manager.store, store, _deployer, clock=clock, drain_delay_s=5, offline=offline
    )
    spec = {
        **SPEC,
        "checks": [
            # A low agreement would fail the rollout; the labelled truth says v2 is better.
            {"name": "offline_accuracy", "threshold": 0.0},
        ],
    }
    rid = manager.start(spec)["id"]
    manager.tick()
    for _ in range(2):
        clock.now += 11
        traffic(manager, rid, clock.now - 1, challenger_errors=False)
        manager.tick()
    done = manager.describe(rid)
    assert done["state"] == "promoted" and store.aliases("detector")["champion"] == 2
    assert len(asked) == 1 and asked[0][1:] == ("detector", 1, 2) and asked[0][0] is store


def test_a_worse_model_is_rolled_back_and_a_failing_scorer_is_no_verdict(setup) -> None:  # type: ignore[no-untyped-def]
    manager, store, _deployer, clock = setup
    manager.offline = lambda *a: scores(0.9, 0.5)
    rid = manager.start({**SPEC, "checks": [{"name": "offline_accuracy", "threshold": 0.0}]})["id"]
    manager.tick()
    clock.now += 11
    traffic(manager, rid, clock.now - 1, challenger_errors=False)
    manager.tick()
    done = manager.describe(rid)
    assert done["state"] == "rolled_back" and done["ended_reason"] == "offline_accuracy"
    assert store.aliases("detector")["champion"] == 1

    def broken(*a: object) -> LabelledAccuracy:
        raise OSError("registry down")

    manager.offline = broken
    rid = manager.start({**SPEC, "checks": [{"name": "offline_accuracy", "threshold": 0.0}]})["id"]
    manager.tick()
    for _ in range(2):
        clock.now += 11
        traffic(manager, rid, clock.now - 1, challenger_errors=False)
        manager.tick()
    assert manager.describe(rid)["state"] == "promoted"


def test_a_disabled_offline_check_does_not_score(setup) -> None:  # type: ignore[no-untyped-def]
    manager, _store, _deployer, clock = setup
    asked: list[tuple[object, ...]] = []
    manager.offline = lambda *a: asked.append(a)
    checks = [{"name": "offline_accuracy", "threshold": 0.0, "enabled": False}]
    rid = manager.start({**SPEC, "checks": checks})["id"]
    manager.tick()
    clock.now += 11
    traffic(manager, rid, clock.now - 1, challenger_errors=False)
    manager.tick()
    assert asked == [] and manager.describe(rid)["step_index"] == 1


def test_no_scores_yet_is_asked_again_and_a_failure_is_logged(
    setup, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    import logging

    manager, _store, _deployer, clock = setup
    answers: list[LabelledAccuracy | None] = [None, scores(0.9, 0.5)]
    asked: list[int] = []

    def offline(*a: object) -> LabelledAccuracy | None:
        asked.append(1)
        return answers.pop(0)

    manager.offline = offline
    rid = manager.start({**SPEC, "checks": [{"name": "offline_accuracy", "threshold": 0.0}]})["id"]
    manager.tick()  # activates: no window measured yet
    clock.now += 11
    traffic(manager, rid, clock.now - 1, challenger_errors=False)
    manager.tick()  # None: no verdict, the step passes on its other checks
    assert manager.describe(rid)["step_index"] == 1 and len(asked) == 1
    clock.now += 11
    traffic(manager, rid, clock.now - 1, challenger_errors=False)
    manager.tick()  # asked again, and now the worse challenger fails
    assert len(asked) == 2 and manager.describe(rid)["ended_reason"] == "offline_accuracy"

    def broken(*a: object) -> LabelledAccuracy:
        raise OSError("registry down")

    manager.offline = broken
    rid = manager.start({**SPEC, "checks": [{"name": "offline_accuracy", "threshold": 0.0}]})["id"]
    manager.tick()
    clock.now += 11
    traffic(manager, rid, clock.now - 1, challenger_errors=False)
    with caplog.at_level(logging.WARNING, logger="canaryserve.controller"):
        manager.tick()
    # (The rolled-back v2 is the challenger again, so its drain is skipped and logged too.)
    assert [r.getMessage() for r in caplog.records if "labelled" in r.getMessage()] == [
        f"rollout {rid}: labelled scores unavailable: OSError('registry down')"
    ]


def test_a_paused_rollout_does_not_score_the_labelled_set(setup) -> None:  # type: ignore[no-untyped-def]
    manager, _store, _deployer, clock = setup
    asked: list[tuple[object, ...]] = []

    def offline(*args: object) -> None:
        asked.append(args)
        raise OSError("not now")  # no verdict: the rollout is not judged on it

    manager.offline = offline
    rid = manager.start({**SPEC, "checks": [{"name": "offline_accuracy", "threshold": 0.0}]})["id"]
    manager.tick()  # pending -> progressing
    manager.pause(rid)
    clock.now += 11
    manager.tick()
    assert asked == []  # minutes of scoring for a rollout nobody judges
    manager.resume(rid)
    clock.now += 11
    manager.tick()
    assert len(asked) == 1
