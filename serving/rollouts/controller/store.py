"""Rollouts and their event log in one SQLite file (``<data_dir>/rollouts.db`` by default).

The whole :class:`~serving.rollouts.machine.Rollout` is kept as a JSON document; ``model``,
``state`` and the timestamps are copied into columns for the queries. At most one *active*
rollout per model is enforced by the database itself (a partial unique index), so two
controllers or API processes racing to start one cannot both succeed.

Several processes may share the file: WAL mode lets readers run beside the writer, every write
is one ``BEGIN IMMEDIATE`` transaction (document and events together), and ``busy_timeout``
makes a writer wait for the lock instead of failing. Each call opens its own connection, so a
store object may be shared between threads too.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from model_registry.settings import data_dir
from serving.errors import InvalidRolloutTransition, RolloutConflict, UnknownRollout
from serving.rollouts.machine import ACTIVE_STATES, ENDED_STATES, Event, Rollout

BUSY_TIMEOUT_MS = 10_000

_ACTIVE_SQL = ", ".join(f"'{s}'" for s in sorted(ACTIVE_STATES))

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS rollouts (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    state TEXT NOT NULL,
    doc TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS rollouts_one_active_per_model
    ON rollouts (model) WHERE state IN ({_ACTIVE_SQL});
CREATE INDEX IF NOT EXISTS rollouts_by_model ON rollouts (model, created_at);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id TEXT NOT NULL REFERENCES rollouts (id),
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    weight REAL NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_rollout ON events (rollout_id, id);
"""


def default_path() -> Path:
    return data_dir() / "rollouts.db"


class RolloutStore:
    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: no implicit transactions; writes say BEGIN IMMEDIATE themselves
        # so that the write lock is taken before the reads they depend on.
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # --- writes ----------------------------------------------------------------------------

    def create(self, r: Rollout, events: Iterable[Event] = ()) -> None:
        """Insert a new rollout; RolloutConflict if its model already has an active one."""
        with self._write() as db:
            if r.state in ACTIVE_STATES:
                current = self._active_row(db, r.model)
                if current is not None:
                    raise _conflict(r.model, current[0], current[1])
            try:
                db.execute(
                    "INSERT INTO rollouts (id, model, state, doc, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (r.id, r.model, r.state, _dumps(r.to_dict()), r.created_at, r.updated_at),
                )
            except sqlite3.IntegrityError:
                # The check above holds the write lock, so this is a duplicate id (or a writer
                # that bypassed this class and raced us): either way the caller must not go on.
                raise RolloutConflict(
                    f"rollout {r.id!r} already exists", rollout_id=r.id, model=r.model
                ) from None
            self._append(db, events)

    def save(
        self,
        r: Rollout,
        events: Iterable[Event] = (),
        *,
        expected_updated_at: float | None = None,
    ) -> None:
        """Store the new state of ``r`` and its events, all or nothing.

        ``expected_updated_at``: the ``updated_at`` of the copy ``r`` was computed from; when
        another process saved in between (a pause or abort from the API), RolloutConflict
        instead of overwriting it. An ended rollout is never overwritten with another state.
        """
        with self._write() as db:
            row = db.execute(
                "SELECT state, updated_at FROM rollouts WHERE id = ?", (r.id,)
            ).fetchone()
            if row is None:
                raise _unknown(r.id)
            state, updated_at = row
            if state in ENDED_STATES and r.state != state:
                raise InvalidRolloutTransition(
                    f"rollout {r.id!r} already ended ({state!r}); cannot make it {r.state!r}",
                    rollout_id=r.id,
                    state=state,
                )
            if expected_updated_at is not None and updated_at != expected_updated_at:
                raise RolloutConflict(
                    f"rollout {r.id!r} changed since it was read (now {state!r}, updated at "
                    f"{updated_at!r}, expected {expected_updated_at!r}); read it again",
                    rollout_id=r.id,
                    state=state,
                )
            try:
                db.execute(
                    "UPDATE rollouts SET state = ?, doc = ?, updated_at = ? WHERE id = ?",
                    (r.state, _dumps(r.to_dict()), r.updated_at, r.id),
                )
            except sqlite3.IntegrityError:
                current = self._active_row(db, r.model)
                raise _conflict(r.model, *(current or (None, None))) from None
            self._append(db, events)

    @staticmethod
    def _append(db: sqlite3.Connection, events: Iterable[Event]) -> None:
        db.executemany(
            "INSERT INTO events (rollout_id, ts, kind, from_state, to_state, weight, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (e.rollout_id, e.ts, e.kind, e.from_state, e.to_state, e.weight, _dumps(e.detail))
                for e in events
            ],
        )

    # --- reads -----------------------------------------------------------------------------

    def get(self, rollout_id: str) -> Rollout:
        with self._connect() as db:
            row = db.execute("SELECT doc FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
        if row is None:
            raise _unknown(rollout_id)
        return Rollout.from_dict(json.loads(row[0]))

    def list(self, active_only: bool = False, model: str | None = None) -> builtins.list[Rollout]:
        """Rollouts, oldest first."""
        sql, args = "SELECT doc FROM rollouts WHERE 1 = 1", []
        if active_only:
            sql += f" AND state IN ({_ACTIVE_SQL})"
        if model is not None:
            sql += " AND model = ?"
            args.append(model)
        with self._connect() as db:
            rows = db.execute(sql + " ORDER BY created_at, id", args).fetchall()
        return [Rollout.from_dict(json.loads(doc)) for (doc,) in rows]

    def active_for(self, model: str) -> Rollout | None:
        with self._connect() as db:
            row = self._active_row(db, model)
        return self.get(row[0]) if row is not None else None

    def events(self, rollout_id: str) -> builtins.list[Event]:
        """The rollout's events in the order they were recorded."""
        with self._connect() as db:
            if db.execute("SELECT 1 FROM rollouts WHERE id = ?", (rollout_id,)).fetchone() is None:
                raise _unknown(rollout_id)
            rows = db.execute(
                "SELECT rollout_id, ts, kind, from_state, to_state, weight, detail "
                "FROM events WHERE rollout_id = ? ORDER BY id",
                (rollout_id,),
            ).fetchall()
        return [
            Event(rid, ts, kind, before, after, weight, json.loads(detail))
            for rid, ts, kind, before, after, weight, detail in rows
        ]

    @staticmethod
    def _active_row(db: sqlite3.Connection, model: str) -> tuple[str, str] | None:
        row = db.execute(
            f"SELECT id, state FROM rollouts WHERE model = ? AND state IN ({_ACTIVE_SQL})",
            (model,),
        ).fetchone()
        return (row[0], row[1]) if row is not None else None


def _dumps(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True)


def _unknown(rollout_id: str) -> UnknownRollout:
    return UnknownRollout(f"no rollout {rollout_id!r}", rollout_id=rollout_id)


def _conflict(model: str, rollout_id: str | None, state: str | None) -> RolloutConflict:
    return RolloutConflict(
        f"model {model!r} already has an active rollout {rollout_id!r} ({state}); "
        "abort it or wait for it to end",
        model=model,
        rollout_id=rollout_id,
    )
