from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from serving.errors import InvalidRolloutTransition, RolloutConflict, UnknownRollout
from serving.rollouts.checks import ArmStats, WindowStats
from serving.rollouts.controller.store import RolloutStore
from serving.rollouts.machine import Event, Rollout, abort, activate, pause, start, tick
from serving.rollouts.spec import parse_rollout_spec
from tests.unit.serving.rollouts.test_rollout_machine import WINDOW_CHECKS

T0 = 1_700_000_000.0


def _start(rollout_id: str, model: str = "detector", **kw: object) -> tuple[Rollout, list[Event]]:
    raw = {"model": model, "challenger_version": 3, "step_weights": [10, 50, 100]}
    spec = parse_rollout_spec({**raw, "checks": WINDOW_CHECKS, **kw})
    return start(spec, champion_version=2, rollout_id=rollout_id, now=T0)


def _stats(errors: int = 0) -> WindowStats:
    stats = WindowStats(champion=ArmStats(), challenger=ArmStats())
    for i in range(30):
        stats.champion.record(10.0 + i % 3)
        stats.challenger.record(12.0 + i % 5, error=i < errors)
    return stats


@pytest.fixture
def store(tmp_path: Path) -> RolloutStore:
    return RolloutStore(tmp_path / "rollouts.db")


def test_round_trip(store: RolloutStore) -> None:
    r, events = _start("ro-1")
    store.create(r, events)
    assert store.get("ro-1") == r
    assert store.events("ro-1") == events
    r2, more, _ = activate(r, T0 + 5)
    store.save(r2, more)
    got = store.get("ro-1")
    assert got == r2 and (got.state, got.weight) == ("progressing", 10.0)
    assert [e.kind for e in store.events("ro-1")] == ["started", "step"]


def test_a_second_active_rollout_on_the_same_model_is_refused(store: RolloutStore) -> None:
    store.create(*_start("ro-1"))
    with pytest.raises(RolloutConflict) as e:
        store.create(*_start("ro-2"))
    assert "'detector'" in e.value.message and "'ro-1'" in e.value.message
    assert e.value.status_code == 409
    # Nothing of the refused rollout was written, and other models are unaffected.
    with pytest.raises(UnknownRollout):
        store.get("ro-2")
    store.create(*_start("ro-3", model="ocr"))
    assert [r.id for r in store.list(active_only=True)] == ["ro-1", "ro-3"]


def test_a_duplicate_id_is_refused(store: RolloutStore) -> None:
    r, events = _start("ro-1")
    store.create(r, events)
    ended, more, _ = abort(r, T0 + 1)
    store.save(ended, more)
    with pytest.raises(RolloutConflict, match="'ro-1' already exists"):
        store.create(*_start("ro-1"))


def test_the_database_itself_allows_one_active_rollout_per_model(store: RolloutStore) -> None:
    store.create(*_start("ro-1"))
    db = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO rollouts VALUES ('ro-x', 'detector', 'paused', '{}', 0, 0)"
        )  # bypassing the class
    db.close()


def test_concurrent_creates_let_exactly_one_win(store: RolloutStore) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            RolloutStore(store.path).create(*_start(f"ro-{i}"))
            outcomes.append("ok")
        except RolloutConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["conflict"] * 5 + ["ok"]
    assert len(store.list(model="detector")) == 1


def test_an_ended_rollout_allows_a_new_one(store: RolloutStore) -> None:
    r, events = _start("ro-1")
    store.create(r, events)
    r, more, _ = abort(r, T0 + 10)
    store.save(r, more)
    assert store.active_for("detector") is None
    new, new_events = _start("ro-2")
    store.create(new, new_events)
    assert store.active_for("detector") == new
    assert [x.id for x in store.list()] == ["ro-1", "ro-2"]
    assert [x.id for x in store.list(active_only=True)] == ["ro-2"]
    assert [x.id for x in store.list(model="detector", active_only=False)] == ["ro-1", "ro-2"]
    assert store.list(model="ocr") == []


def test_unknown_ids_are_quoted(store: RolloutStore) -> None:
    with pytest.raises(UnknownRollout, match="no rollout 'nope'") as e:
        store.get("nope")
    assert e.value.status_code == 404
    with pytest.raises(UnknownRollout, match="'nope'"):
        store.events("nope")
    ghost, _ = _start("nope")
    with pytest.raises(UnknownRollout, match="'nope'"):
        store.save(ghost)


def test_save_is_atomic(store: RolloutStore) -> None:
    r, events = _start("ro-1")
    store.create(r, events)
    r2, _, _ = activate(r, T0 + 1)
    orphan = Event("no-such-rollout", T0 + 1, "step", "pending", "progressing", 10.0, {})
    with pytest.raises(sqlite3.IntegrityError):
        store.save(r2, [orphan])
    # The event failed, so the document was not updated either.
    assert store.get("ro-1") == r
    assert [e.kind for e in store.events("ro-1")] == ["started"]


def test_a_stale_copy_cannot_overwrite_a_newer_state(store: RolloutStore) -> None:
    r, events = _start("ro-1")
    store.create(r, events)
    r, more, _ = activate(r, T0 + 1)
    store.save(r, more)
    # The API process pauses while the controller still holds the running copy.
    paused, more = pause(store.get("ro-1"), T0 + 30)
    store.save(paused, more, expected_updated_at=r.updated_at)
    advanced, more, _ = tick(r, _stats(), T0 + 61)
    with pytest.raises(RolloutConflict, match="changed since it was read"):
        store.save(advanced, more, expected_updated_at=r.updated_at)
    assert store.get("ro-1").state == "paused"
    # And an ended rollout is never brought back, even without the check.
    ended, more, _ = abort(store.get("ro-1"), T0 + 62)
    store.save(ended, more)
    with pytest.raises(InvalidRolloutTransition, match="already ended \\('aborted'\\)"):
        store.save(advanced)


def test_a_reopened_store_continues_the_state_machine_identically(tmp_path: Path) -> None:
    path = tmp_path / "rollouts.db"
    first = RolloutStore(path)
    r, events = _start("ro-1", threshold=2)
    first.create(r, events)
    r, events, _ = activate(r, T0 + 1)
    first.save(r, events)
    r, events, _ = tick(r, _stats(errors=6), T0 + 61)  # one failed check, held on step 0
    first.save(r, events)
    assert r.failed_checks == 1 and r.last_results

    # "Restart": a new store object on the same file, as a new controller process would.
    loaded = RolloutStore(path).get("ro-1")
    assert loaded == r
    script = [(_stats(), T0 + 121), (_stats(errors=6), T0 + 181)]
    for stats, now in script:
        a = tick(r, stats, now)
        b = tick(loaded, stats, now)
        assert a == b
        r, loaded = a[0], b[0]
    assert (loaded.state, loaded.ended_reason, loaded.failed_checks) == (
        "rolled_back",
        "error_rate",
        2,
    )


def test_events_come_back_in_order(store: RolloutStore) -> None:
    r, events = _start("ro-1", threshold=3)
    store.create(r, events)
    for step in [
        lambda x: activate(x, T0 + 1),
        lambda x: tick(x, _stats(errors=6), T0 + 61),
        lambda x: tick(x, _stats(), T0 + 121),
        lambda x: (*pause(x, T0 + 130), None),
        lambda x: abort(x, T0 + 140),
    ]:
        r, events, _ = step(r)
        store.save(r, events)
    stored = store.events("ro-1")
    assert [(e.kind, e.from_state, e.to_state) for e in stored] == [
        ("started", None, "pending"),
        ("step", "pending", "progressing"),
        ("check_failed", "progressing", "progressing"),
        ("step", "progressing", "progressing"),
        ("paused", "progressing", "paused"),
        ("aborted", "paused", "aborted"),
    ]
    assert [e.ts for e in stored] == sorted(e.ts for e in stored)
    failed = stored[2].detail
    assert failed["failed"] == ["error_rate"]
    assert next(x for x in failed["results"] if x["name"] == "error_rate")["value"] == 0.2


def test_wal_mode_and_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARYSERVE_DATA_DIR", str(tmp_path / "data"))
    store = RolloutStore()
    assert store.path == (tmp_path / "data" / "rollouts.db").resolve()
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
