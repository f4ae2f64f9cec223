"""Feature rows kept per (model, version), bounded by size and by age.

Pure in-memory logic with an injectable clock so retention can be tested without sleeping.
Persistence comes later: a :class:`Window` is only "append rows" and "read them back as a
DataFrame", which a file- or table-backed store can implement the same way.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

Clock = Callable[[], datetime]
Row = Mapping[str, float | str]

# The column that carries each row's capture time in ``Window.to_frame``; drift checks skip
# it (datetime dtype) so it never counts as a feature.
TS_COLUMN = "ts"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _aware(ts: datetime) -> datetime:
    # Naive datetimes are taken as UTC so a test's datetime(2026, 1, 1) compares with now().
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


@dataclass(frozen=True, order=True)
class WindowKey:
    model: str
    version: str

    def __str__(self) -> str:
        return f"{self.model}@{self.version}"


class Window:
    """Rows of one (model, version), oldest first.

    ``max_rows`` drops the oldest rows on append (a size window); ``retention`` drops rows older
    than ``clock() - retention`` on append, on read and on :meth:`prune` (a time window).
    """

    def __init__(
        self,
        *,
        max_rows: int | None = 10_000,
        retention: timedelta | None = timedelta(days=7),
        clock: Clock = utc_now,
    ) -> None:
        if max_rows is not None and max_rows < 1:
            raise ValueError(f"max_rows has value {max_rows!r}. Expected at least 1 or None.")
        if retention is not None and retention <= timedelta(0):
            raise ValueError(f"retention has value {retention!r}. Expected a positive duration.")
        self.max_rows = max_rows
        self.retention = retention
        self._clock = clock
        self._rows: deque[tuple[datetime, dict[str, float | str]]] = deque(maxlen=max_rows)

    def append(self, row: Row, *, ts: datetime | None = None) -> None:
        if TS_COLUMN in row:
            raise ValueError(f"Row has a {TS_COLUMN!r} key; pass the capture time as ts=.")
        stamp = _aware(ts) if ts is not None else _aware(self._clock())
        # Rows normally arrive in time order; a late one is placed so reads stay sorted.
        if self._rows and stamp < self._rows[-1][0]:
            items = sorted([*self._rows, (stamp, dict(row))], key=lambda item: item[0])
            self._rows.clear()
            self._rows.extend(items[-self.max_rows :] if self.max_rows else items)
        else:
            self._rows.append((stamp, dict(row)))
        self.prune()

    def extend(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.append(row)

    def prune(self) -> int:
        """Drop rows past retention; return how many were dropped."""
        if self.retention is None:
            return 0
        cutoff = _aware(self._clock()) - self.retention
        dropped = 0
        while self._rows and self._rows[0][0] < cutoff:
            self._rows.popleft()
            dropped += 1
        return dropped

    def __len__(self) -> int:
        self.prune()
        return len(self._rows)

    def __iter__(self) -> Iterator[tuple[datetime, dict[str, float | str]]]:
        self.prune()
        return iter(list(self._rows))

    def to_frame(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        last: int | None = None,
    ) -> pd.DataFrame:
        """Rows with ``since <= ts < until`` (then the newest ``last`` of them) as a DataFrame:
        a UTC ``ts`` column plus one column per feature (NaN where a row lacks it)."""
        self.prune()
        lo = _aware(since) if since is not None else None
        hi = _aware(until) if until is not None else None
        picked = [
            (ts, row)
            for ts, row in self._rows
            if (lo is None or ts >= lo) and (hi is None or ts < hi)
        ]
        if last is not None:
            picked = picked[-last:] if last > 0 else []
        frame = pd.DataFrame([row for _, row in picked])
        frame.insert(0, TS_COLUMN, pd.to_datetime([ts for ts, _ in picked], utc=True))
        return frame


class WindowStore:
    """One :class:`Window` per (model, version), created on first append."""

    def __init__(
        self,
        *,
        retention_days: float = 7.0,
        max_rows_per_window: int | None = 10_000,
        clock: Clock = utc_now,
    ) -> None:
        if retention_days <= 0:
            raise ValueError(f"retention_days has value {retention_days!r}. Expected > 0.")
        self.retention = timedelta(days=retention_days)
        self.max_rows_per_window = max_rows_per_window
        self._clock = clock
        self._windows: dict[WindowKey, Window] = {}

    def window(self, model: str, version: str) -> Window:
        key = WindowKey(model, version)
        if key not in self._windows:
            self._windows[key] = Window(
                max_rows=self.max_rows_per_window, retention=self.retention, clock=self._clock
            )
        return self._windows[key]

    def append(self, model: str, version: str, row: Row, *, ts: datetime | None = None) -> None:
        self.window(model, version).append(row, ts=ts)

    def frame(
        self,
        model: str,
        version: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        last: int | None = None,
    ) -> pd.DataFrame:
        return self.window(model, version).to_frame(since=since, until=until, last=last)

    def keys(self) -> list[WindowKey]:
        return sorted(self._windows)

    def prune(self) -> dict[WindowKey, int]:
        """Apply retention everywhere; forget windows left empty. Returns rows dropped per key."""
        dropped = {key: w.prune() for key, w in self._windows.items()}
        for key in [k for k, w in self._windows.items() if len(w) == 0]:
            del self._windows[key]
        return {k: n for k, n in dropped.items() if n}
