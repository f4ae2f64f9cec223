from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from drift.windows import TS_COLUMN, WindowKey, WindowStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def test_rows_come_back_as_a_dataframe_with_ts() -> None:
    clock = FakeClock()
    store = WindowStore(clock=clock)
    store.append("detector", 1, {"brightness": 100.0, "label": "walk"}, request_id="r1")
    clock.advance(seconds=1)
    store.append("detector", 1, {"brightness": 110.0})
    frame = store.frame("detector", 1)
    assert list(frame.columns) == [TS_COLUMN, "request_id", "brightness", "label"]
    assert frame["brightness"].tolist() == [100.0, 110.0]
    assert frame["request_id"].tolist()[0] == "r1"
    assert pd.isna(frame["label"].iloc[1])
    assert frame[TS_COLUMN].iloc[0] == pd.Timestamp(T0)
    assert str(frame[TS_COLUMN].dt.tz) == "UTC"


def test_nan_features_round_trip_as_nan() -> None:
    store = WindowStore(clock=FakeClock())
    store.append("detector", 1, {"pred_count": 0.0, "pred_mean_confidence": float("nan")})
    frame = store.frame("detector", 1)
    assert frame["pred_count"].tolist() == [0.0]
    assert math.isnan(frame["pred_mean_confidence"].iloc[0])
    assert frame["pred_mean_confidence"].dtype == float


def test_empty_window_gives_an_empty_frame() -> None:
    frame = WindowStore(clock=FakeClock()).frame("detector", 1)
    assert len(frame) == 0
    assert TS_COLUMN in frame.columns


def test_size_cap_keeps_the_newest_rows_per_window() -> None:
    clock = FakeClock()
    store = WindowStore(max_rows_per_window=3, clock=clock)
    for i in range(5):
        clock.advance(seconds=1)
        store.append("detector", 1, {"i": float(i)})
    store.append("detector", 2, {"i": 99.0})
    assert store.frame("detector", 1)["i"].tolist() == [2.0, 3.0, 4.0]
    assert store.frame("detector", 2)["i"].tolist() == [99.0]


def test_large_caps_are_enforced_every_tenth_of_the_cap() -> None:
    clock = FakeClock()
    store = WindowStore(max_rows_per_window=50, clock=clock)  # trims every 5 new rows
    for i in range(57):
        clock.advance(seconds=1)
        store.append("detector", 1, {"i": float(i)})
    kept = store.frame("detector", 1)["i"].tolist()
    # Trimmed to the newest 50 at row 55; rows 56 and 57 came after: 52 rows, never over 55.
    assert kept == [float(i) for i in range(5, 57)]


def test_retention_drops_old_rows_as_the_clock_moves() -> None:
    clock = FakeClock()
    store = WindowStore(retention_days=2, clock=clock)
    store.append("ocr", 1, {"i": 0.0})
    clock.advance(days=1)
    store.append("ocr", 1, {"i": 1.0})
    assert store.count("ocr", 1) == 2
    clock.advance(days=1, seconds=1)
    # Expired rows are invisible at once and deleted by prune.
    assert store.frame("ocr", 1)["i"].tolist() == [1.0]
    assert store.prune() == 1
    clock.advance(days=1)
    assert store.prune() == 1
    assert store.keys() == []


def test_time_slices_and_last() -> None:
    clock = FakeClock()
    store = WindowStore(clock=clock)
    for i in range(6):
        store.append("detector", 1, {"i": float(i)}, ts=T0 + timedelta(hours=i))
    clock.advance(hours=10)
    mid = store.frame("detector", 1, since=T0 + timedelta(hours=2), until=T0 + timedelta(hours=5))
    assert mid["i"].tolist() == [2.0, 3.0, 4.0]
    assert store.frame("detector", 1, last=2)["i"].tolist() == [4.0, 5.0]


def test_late_rows_are_read_in_time_order() -> None:
    clock = FakeClock(T0 + timedelta(hours=5))
    store = WindowStore(clock=clock)
    store.append("detector", 1, {"i": 2.0}, ts=T0 + timedelta(hours=2))
    store.append("detector", 1, {"i": 1.0}, ts=T0 + timedelta(hours=1))
    assert store.frame("detector", 1)["i"].tolist() == [1.0, 2.0]


def test_sources_are_separate_windows_paired_by_request_id() -> None:
    store = WindowStore(clock=FakeClock())
    rows = [
        {"model": "detector", "version": "1", "source": "live", "request_id": f"r{i}", "x": 1.0}
        for i in range(4)
    ]
    rows += [
        {"model": "detector", "version": "2", "source": "shadow", "request_id": "r1", "x": 2.0},
        {"model": "detector", "version": "2", "source": "shadow", "request_id": "r3", "x": 2.0},
    ]
    assert store.ingest(rows) == 6
    shadow = store.frame("detector", 2, source="shadow")
    assert shadow["request_id"].tolist() == ["r1", "r3"]
    paired = store.frame("detector", 1, request_ids=shadow["request_id"])
    assert paired["request_id"].tolist() == ["r1", "r3"]
    assert store.frame("detector", 2).empty  # no live rows for v2
    assert store.keys() == [WindowKey("detector", "1")]
    assert store.keys("shadow") == [WindowKey("detector", "2")]


def test_unknown_source_is_rejected() -> None:
    with pytest.raises(ValueError, match="source has value 'replay'"):
        WindowStore().ingest([{"model": "m", "version": "1", "source": "replay", "x": 1.0}])


def test_rows_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "drift" / "drift.db"
    first = WindowStore(path)
    first.append("ocr", 2, {"text_length": 12.0})
    first.close()
    again = WindowStore(path)
    assert again.frame("ocr", 2)["text_length"].tolist() == [12.0]


@pytest.mark.parametrize(
    "kwargs", [{"retention_days": 0}, {"retention_days": -1}, {"max_rows_per_window": 0}]
)
def test_bad_limits_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="has value"):
        WindowStore(**kwargs)  # type: ignore[arg-type]
