"""Captured feature rows, kept per (model, version) in SQLite, bounded by size and by age.

The drift monitor is the only writer (one actor per cluster); a row is *acknowledged* once
:meth:`WindowStore.ingest` returns, and an acknowledged row survives a restart of the monitor.
Retention (days) and a per-window row cap bound the file. ``source`` separates live traffic
(``"live"``) from mirrored shadow calls (``"shadow"``): a challenger's shadow rows share their
``request_id`` with the champion's live rows of the same request, which is what pairs them.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

Clock = Callable[[], datetime]
Row = Mapping[str, float | str]

# The column that carries each row's capture time in ``frame``; drift checks skip it (datetime
# dtype) so it never counts as a feature.
TS_COLUMN = "ts"
# Keys of a captured row that describe it rather than measure it.
META_KEYS = ("model", "version", "source", "request_id", "ts")
SOURCES = ("live", "shadow")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    source TEXT NOT NULL,
    request_id TEXT,
    ts REAL NOT NULL,
    features TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rows_by_key ON rows (model, version, source, ts);
CREATE INDEX IF NOT EXISTS rows_by_request ON rows (request_id);
"""


def utc_now() -> datetime:
    return datetime.now(UTC)


def _epoch(ts: datetime | float) -> float:
    if isinstance(ts, int | float):
        return float(ts)
    # Naive datetimes are taken as UTC so a test's datetime(2026, 1, 1) compares with now().
    return (ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)).timestamp()


def _clean(value: Any) -> float | str | None:
    # JSON has no NaN; a missing confidence (nothing detected) is stored as null and read back
    # as NaN, which Evidently drops per column.
    if isinstance(value, str):
        return value
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True, order=True)
class WindowKey:
    model: str
    version: str

    def __str__(self) -> str:
        return f"{self.model}@{self.version}"


class WindowStore:
    """All captured rows, one logical window per (model, version, source).

    ``path=None`` keeps everything in memory (tests); otherwise a SQLite file. ``retention_days``
    drops rows older than ``clock() - retention`` on :meth:`prune` (the monitor calls it on
    every ingest); ``max_rows_per_window`` keeps only the newest rows of each window.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        retention_days: float = 7.0,
        max_rows_per_window: int | None = 20_000,
        clock: Clock = utc_now,
    ) -> None:
        if retention_days <= 0:
            raise ValueError(f"retention_days has value {retention_days!r}. Expected > 0.")
        if max_rows_per_window is not None and max_rows_per_window < 1:
            raise ValueError(
                f"max_rows_per_window has value {max_rows_per_window!r}. Expected >= 1 or None."
            )
        self.retention = timedelta(days=retention_days)
        self.max_rows_per_window = max_rows_per_window
        self._clock = clock
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            ":memory:" if path is None else str(path), check_same_thread=False, timeout=30
        )
        self._lock = threading.Lock()
        self._since_trim: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        with self._lock, self._db:
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL: a commit survives the process (an actor restart loses nothing
                # acknowledged) without an fsync per batch; an fsync per batch stalled other
                # processes' writes on the node (replica logs) and doubled request p95.
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def _cutoff(self) -> float:
        """Epoch seconds before which rows are past retention."""
        return _epoch(self._clock()) - self.retention.total_seconds()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- writes ----------------------------------------------------------------------------

    def append(
        self,
        model: str,
        version: str | int,
        row: Row,
        *,
        ts: datetime | float | None = None,
        source: str = "live",
        request_id: str | None = None,
    ) -> None:
        self.ingest(
            [
                {
                    **row,
                    "model": model,
                    "version": str(version),
                    "source": source,
                    "request_id": request_id,
                    "ts": ts if ts is not None else self._clock(),
                }
            ]
        )

    def ingest(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Persist captured rows (each: META_KEYS + features) in one transaction."""
        values = []
        for row in rows:
            source = str(row.get("source", "live"))
            if source not in SOURCES:
                raise ValueError(f"source has value {source!r}. Expected one of {SOURCES}.")
            features = {k: _clean(v) for k, v in row.items() if k not in META_KEYS}
            ts = row.get("ts")
            values.append(
                (
                    str(row["model"]),
                    str(row["version"]),
                    source,
                    row.get("request_id"),
                    _epoch(ts) if ts is not None else _epoch(self._clock()),
                    json.dumps(features, separators=(",", ":")),
                )
            )
        if not values:
            return 0
        with self._lock, self._db:
            self._db.executemany(
                "INSERT INTO rows (model, version, source, request_id, ts, features) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                values,
            )
            if self.max_rows_per_window is not None:
                for model, version, source in self._due_for_trim(values):
                    self._db.execute(
                        "DELETE FROM rows WHERE model=? AND version=? AND source=? AND id NOT IN "
                        "(SELECT id FROM rows WHERE model=? AND version=? AND source=? "
                        "ORDER BY ts DESC, id DESC LIMIT ?)",
                        (model, version, source, model, version, source, self.max_rows_per_window),
                    )
        return len(values)

    def _due_for_trim(self, values: list[tuple[Any, ...]]) -> list[tuple[str, str, str]]:
        """Windows that took ``trim_every`` rows since their last trim. Trimming sorts the whole
        window (tens of ms at 20k rows), so it runs once per ``max_rows_per_window // 10`` new
        rows, not per batch: a window holds at most ``max_rows_per_window + trim_every`` rows."""
        assert self.max_rows_per_window is not None
        trim_every = max(1, self.max_rows_per_window // 10)
        due: dict[tuple[str, str, str], None] = {}
        for m, v, src, *_ in values:
            key = (m, v, src)
            self._since_trim[key] += 1
            if self._since_trim[key] >= trim_every:
                self._since_trim[key] = 0
                due[key] = None
        return list(due)

    def prune(self) -> int:
        """Drop rows past retention; return how many were dropped."""
        cutoff = self._cutoff()
        with self._lock, self._db:
            return self._db.execute("DELETE FROM rows WHERE ts < ?", (cutoff,)).rowcount

    # --- reads -----------------------------------------------------------------------------

    def frame(
        self,
        model: str,
        version: str | int,
        *,
        source: str = "live",
        since: datetime | float | None = None,
        until: datetime | float | None = None,
        last: int | None = None,
        request_ids: Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """Rows with ``since <= ts < until`` (then the newest ``last``), oldest first: a UTC
        ``ts`` column, ``request_id``, then one column per feature (NaN where a row lacks it)."""
        cutoff = self._cutoff()
        sql = "SELECT ts, request_id, features FROM rows WHERE model=? AND version=? AND source=?"
        args: list[Any] = [model, str(version), source]
        lo = max(cutoff, _epoch(since)) if since is not None else cutoff
        sql += " AND ts >= ?"
        args.append(lo)
        if until is not None:
            sql += " AND ts < ?"
            args.append(_epoch(until))
        ids = None if request_ids is None else set(request_ids)
        sql += " ORDER BY ts DESC, id DESC"
        if last is not None and ids is None:
            sql += " LIMIT ?"
            args.append(max(0, last))
        with self._lock:
            fetched = self._db.execute(sql, args).fetchall()
        if ids is not None:
            fetched = [r for r in fetched if r[1] in ids]
            if last is not None:
                fetched = fetched[: max(0, last)]
        fetched.reverse()
        frame = pd.DataFrame([json.loads(f) for _, _, f in fetched])
        for column in frame.columns:
            if frame[column].isna().all():  # all null (e.g. no detection ever): numeric NaN
                frame[column] = frame[column].astype(float)
        frame.insert(0, "request_id", [rid for _, rid, _ in fetched])
        frame.insert(0, TS_COLUMN, pd.to_datetime([ts for ts, _, _ in fetched], unit="s", utc=True))
        return frame

    def count(
        self, model: str, version: str | int, *, source: str = "live", since: float | None = None
    ) -> int:
        cutoff = self._cutoff()
        lo = max(cutoff, since) if since is not None else cutoff
        with self._lock:
            (n,) = self._db.execute(
                "SELECT COUNT(*) FROM rows WHERE model=? AND version=? AND source=? AND ts >= ?",
                (model, str(version), source, lo),
            ).fetchone()
        return int(n)

    def keys(self, source: str = "live") -> list[WindowKey]:
        cutoff = self._cutoff()
        with self._lock:
            got = self._db.execute(
                "SELECT DISTINCT model, version FROM rows WHERE source=? AND ts >= ?",
                (source, cutoff),
            ).fetchall()
        return sorted(WindowKey(m, v) for m, v in got)
