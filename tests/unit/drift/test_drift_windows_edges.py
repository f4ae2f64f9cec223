"""drift.windows edges: time inputs, retention and cap boundaries, the file, threads, slicing."""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from drift.windows import TS_COLUMN, WindowKey, WindowStore, utc_now
from tests.unit.drift.test_drift_windows import T0, FakeClock

T0_EPOCH = T0.timestamp()


def _ts(frame: pd.DataFrame) -> list[pd.Timestamp]:
    return list(frame[TS_COLUMN])


@pytest.fixture
def local_zone_behind_utc() -> Iterator[None]:
    """A local zone 5 h behind UTC (POSIX rule, no tz database needed)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "EST+05"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


# --- time inputs ---------------------------------------------------------------------------


def test_utc_now_is_timezone_aware_utc() -> None:
    assert utc_now().utcoffset() == timedelta(0)


def test_epoch_seconds_work_wherever_a_time_is_taken() -> None:
    store = WindowStore(clock=FakeClock(T0 + timedelta(hours=10)))
    store.append("m", 1, {"i": 0.0}, ts=T0_EPOCH)  # float
    store.append("m", 1, {"i": 1.0}, ts=int(T0_EPOCH) + 3600)  # int
    store.append("m", 1, {"i": 2.0}, ts=T0_EPOCH + 7200)
    assert _ts(store.frame("m", 1))[:2] == [pd.Timestamp(T0), pd.Timestamp(T0 + timedelta(hours=1))]
    sliced = store.frame("m", 1, since=T0_EPOCH + 3600, until=T0_EPOCH + 7200)
    assert sliced["i"].tolist() == [1.0]


def test_an_aware_time_in_another_zone_keeps_its_instant() -> None:
    plus_one = timezone(timedelta(hours=1))
    store = WindowStore(clock=FakeClock(T0 + timedelta(hours=10)))
    store.append("m", 1, {"i": 0.0}, ts=datetime(2026, 1, 1, 1, 0, tzinfo=plus_one))  # == T0
    store.append("m", 1, {"i": 1.0}, ts=T0 + timedelta(hours=1))
    assert _ts(store.frame("m", 1))[0] == pd.Timestamp(T0)
    since = datetime(2026, 1, 1, 2, 0, tzinfo=plus_one)  # T0 + 1 h
    assert store.frame("m", 1, since=since)["i"].tolist() == [1.0]
    assert store.frame("m", 1, until=since)["i"].tolist() == [0.0]


def test_a_naive_time_is_utc_whatever_the_local_zone(local_zone_behind_utc: None) -> None:
    assert datetime(2026, 1, 1).timestamp() != T0_EPOCH  # the local zone really is not UTC
    store = WindowStore(clock=FakeClock(T0 + timedelta(hours=10)))
    store.append("m", 1, {"i": 0.0}, ts=datetime(2026, 1, 1))
    store.append("m", 1, {"i": 1.0}, ts=datetime(2026, 1, 1, 1))
    assert _ts(store.frame("m", 1)) == [
        pd.Timestamp(T0),
        pd.Timestamp(T0 + timedelta(hours=1)),
    ]
    assert store.frame("m", 1, since=datetime(2026, 1, 1, 1))["i"].tolist() == [1.0]
    naive_clock = WindowStore(clock=lambda: datetime(2026, 1, 1, 1))
    naive_clock.append("m", 1, {"i": 0.0})
    assert _ts(naive_clock.frame("m", 1)) == [pd.Timestamp(T0 + timedelta(hours=1))]


def test_feature_values_are_cleaned_on_the_way_in() -> None:
    store = WindowStore(clock=FakeClock())
    store.append("m", 1, {"inf": math.inf, "ninf": -math.inf, "n": 3, "s": "walk"})
    frame = store.frame("m", 1)
    # JSON has no Infinity: a non-finite value is stored as missing, like NaN.
    assert math.isnan(frame["inf"].iloc[0]) and math.isnan(frame["ninf"].iloc[0])
    assert frame["n"].tolist() == [3.0] and isinstance(frame["n"].iloc[0], float)
    assert frame["s"].tolist() == ["walk"]


# --- limits --------------------------------------------------------------------------------


def test_default_retention_is_seven_days_inclusive() -> None:
    clock = FakeClock()
    store = WindowStore(clock=clock)
    store.append("m", 1, {"i": 0.0})
    clock.advance(days=7)
    assert store.count("m", 1) == 1 and store.prune() == 0  # exactly at the cutoff: kept
    clock.advance(microseconds=1)
    assert store.count("m", 1) == 0
    assert store.frame("m", 1).empty and store.keys() == []
    assert store.prune() == 1


@pytest.mark.parametrize("days", [0.5, 1])
def test_short_retentions_are_valid(days: float) -> None:
    clock = FakeClock()
    store = WindowStore(retention_days=days, clock=clock)
    store.append("m", 1, {"i": 0.0})
    clock.advance(days=days)
    assert store.count("m", 1) == 1
    clock.advance(seconds=1)
    assert store.count("m", 1) == 0


def test_limits_are_quoted_when_refused() -> None:
    with pytest.raises(ValueError) as info:
        WindowStore(retention_days=0)
    assert str(info.value) == "retention_days has value 0. Expected > 0."
    with pytest.raises(ValueError) as info:
        WindowStore(max_rows_per_window=-2)
    assert str(info.value) == "max_rows_per_window has value -2. Expected >= 1 or None."


def test_default_cap_keeps_the_newest_20000_rows_of_a_window() -> None:
    store = WindowStore(clock=FakeClock(T0 + timedelta(days=1)))
    rows = [
        {"model": "m", "version": "1", "ts": T0_EPOCH + i, "i": float(i)} for i in range(20_001)
    ]
    assert store.ingest(rows) == 20_001
    assert store.count("m", 1) == 20_000
    assert store.frame("m", 1, last=20_001)["i"].iloc[0] == 1.0  # the oldest went


def test_no_cap_keeps_every_row() -> None:
    clock = FakeClock()
    store = WindowStore(max_rows_per_window=None, clock=clock)
    for i in range(30):
        clock.advance(seconds=1)
        store.append("m", 1, {"i": float(i)})
    assert store.count("m", 1) == 30


def test_a_cap_of_one_keeps_only_the_newest_row() -> None:
    clock = FakeClock()
    store = WindowStore(max_rows_per_window=1, clock=clock)
    for i in range(3):
        clock.advance(seconds=1)
        store.append("m", 1, {"i": float(i)})
        assert store.frame("m", 1)["i"].tolist() == [float(i)]


def test_a_cap_trims_every_tenth_of_itself_rounded_down() -> None:
    clock = FakeClock()
    store = WindowStore(max_rows_per_window=25, clock=clock)  # trims every 25 // 10 = 2 rows
    sizes = []
    for i in range(30):
        clock.advance(seconds=1)
        store.append("m", 1, {"i": float(i)})
        sizes.append(store.count("m", 1))
    assert sizes[23:] == [24, 25, 25, 26, 25, 26, 25]


def test_each_window_counts_its_own_rows_towards_a_trim() -> None:
    clock = FakeClock()
    store = WindowStore(max_rows_per_window=20, clock=clock)  # trims every 2 rows
    for i in range(21):
        clock.advance(seconds=1)
        store.append("m", 1, {"i": float(i)})
    clock.advance(seconds=1)
    store.append("m", 2, {"i": 0.0})  # another window's first row trims nothing here
    assert (store.count("m", 1), store.count("m", 2)) == (21, 1)
    store.append("m", 1, {"i": 21.0})
    assert store.count("m", 1) == 20


# --- the file ------------------------------------------------------------------------------


def test_a_file_store_creates_its_directories_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "drift.db"
    store = WindowStore(path, clock=FakeClock())
    store.append("m", 1, {"x": 1.0})
    store.close()
    assert path.is_file()
    with sqlite3.connect(path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert WindowStore(tmp_path / "other.db", clock=FakeClock()).frame("m", 1).empty
    assert WindowStore(path, clock=FakeClock()).frame("m", 1)["x"].tolist() == [1.0]


def test_rows_on_disk_hold_metadata_columns_and_compact_json(tmp_path: Path) -> None:
    path = tmp_path / "drift.db"
    store = WindowStore(path, clock=FakeClock())
    store.append("ocr", 2, {"len": 12.0, "label": "a", "conf": math.nan}, request_id="r1")
    store.close()
    with sqlite3.connect(path) as other:
        got = other.execute(
            "SELECT model, version, source, request_id, ts, features FROM rows"
        ).fetchall()
    assert got == [("ocr", "2", "live", "r1", T0_EPOCH, '{"len":12.0,"label":"a","conf":null}')]


def test_in_memory_stores_are_private_and_write_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first, second = WindowStore(clock=FakeClock()), WindowStore(clock=FakeClock())
    first.append("m", 1, {"x": 1.0})
    assert second.frame("m", 1).empty
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("in_file", [False, True])
def test_a_store_can_be_used_from_other_threads(tmp_path: Path, in_file: bool) -> None:
    store = WindowStore(tmp_path / "d.db" if in_file else None, clock=FakeClock())
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda i: store.append("m", 1, {"i": float(i)}), range(4)))
        assert pool.submit(store.count, "m", 1).result() == 4
    assert sorted(store.frame("m", 1)["i"]) == [0.0, 1.0, 2.0, 3.0]


# --- writes --------------------------------------------------------------------------------


def test_append_records_source_and_request_id() -> None:
    store = WindowStore(clock=FakeClock())
    store.append("m", 2, {"x": 1.0}, source="shadow", request_id="r9")
    assert store.frame("m", 2).empty
    shadow = store.frame("m", 2, source="shadow")
    assert list(shadow.columns) == [TS_COLUMN, "request_id", "x"]
    assert shadow["request_id"].tolist() == ["r9"]
    assert store.count("m", 2, source="shadow") == 1
    assert store.keys("shadow") == [WindowKey("m", "2")]


def test_ingest_defaults_source_ts_and_request_id() -> None:
    store = WindowStore(clock=FakeClock(T0 + timedelta(hours=1)))
    assert store.ingest([]) == 0
    assert store.ingest([{"model": "m", "version": 1, "x": 1.0}]) == 1
    frame = store.frame("m", "1")
    assert _ts(frame) == [pd.Timestamp(T0 + timedelta(hours=1))]
    assert frame["request_id"].tolist() == [None]
    assert frame["x"].tolist() == [1.0]


# --- reads ---------------------------------------------------------------------------------


def test_last_with_request_ids_keeps_the_newest_matching_rows() -> None:
    clock = FakeClock()
    store = WindowStore(clock=clock)
    for i in range(6):
        clock.advance(seconds=1)
        store.append("m", 1, {"i": float(i)}, request_id=f"r{i}")
    picked = store.frame("m", 1, request_ids=["r0", "r1", "r2", "r9"], last=2)
    assert picked["i"].tolist() == [1.0, 2.0]
    assert picked["request_id"].tolist() == ["r1", "r2"]
    assert store.frame("m", 1, request_ids=[]).empty


@pytest.mark.parametrize("last", [0, -3])
def test_last_zero_or_negative_reads_nothing(last: int) -> None:
    store = WindowStore(clock=FakeClock())
    store.append("m", 1, {"i": 0.0}, request_id="r0")
    assert store.frame("m", 1, last=last).empty
    assert store.frame("m", 1, last=last, request_ids=["r0"]).empty
    assert store.frame("m", 1, last=1)["i"].tolist() == [0.0]


def test_a_since_before_retention_does_not_bring_back_expired_rows() -> None:
    clock = FakeClock()
    store = WindowStore(retention_days=1, clock=clock)
    store.append("m", 1, {"i": 0.0})
    clock.advance(hours=12)
    store.append("m", 1, {"i": 1.0})
    clock.advance(hours=13)
    assert store.frame("m", 1, since=T0 - timedelta(days=3))["i"].tolist() == [1.0]
    assert store.count("m", 1, since=T0_EPOCH - 3 * 86400) == 1


def test_count_since_counts_rows_at_or_after_it() -> None:
    store = WindowStore(clock=FakeClock(T0 + timedelta(hours=10)))
    for i in range(4):
        store.append("m", 1, {"i": float(i)}, ts=T0 + timedelta(hours=i))
    assert store.count("m", 1) == 4
    assert store.count("m", 1, since=T0_EPOCH + 2 * 3600) == 2
    assert store.count("m", 2) == 0


def test_keys_are_sorted_and_name_model_at_version() -> None:
    store = WindowStore(clock=FakeClock())
    for model, version in [("ocr", "2"), ("action", "1"), ("ocr", "10"), ("ocr", "2")]:
        store.append(model, version, {"x": 1.0})
    assert store.keys() == [WindowKey("action", "1"), WindowKey("ocr", "10"), WindowKey("ocr", "2")]
    assert [str(k) for k in store.keys()] == ["action@1", "ocr@10", "ocr@2"]
    assert store.keys("shadow") == []
