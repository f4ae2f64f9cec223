from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from drift.windows import TS_COLUMN, Window, WindowKey, WindowStore

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
    window = Window(clock=clock)
    window.append({"brightness": 100.0, "label": "walk"})
    clock.advance(seconds=1)
    window.append({"brightness": 110.0})
    frame = window.to_frame()
    assert list(frame.columns) == [TS_COLUMN, "brightness", "label"]
    assert frame["brightness"].tolist() == [100.0, 110.0]
    assert pd.isna(frame["label"].iloc[1])
    assert frame[TS_COLUMN].iloc[0] == pd.Timestamp(T0)
    assert str(frame[TS_COLUMN].dt.tz) == "UTC"


def test_empty_window_gives_an_empty_frame() -> None:
    frame = Window(clock=FakeClock()).to_frame()
    assert len(frame) == 0
    assert TS_COLUMN in frame.columns


def test_size_window_keeps_the_newest_rows() -> None:
    window = Window(max_rows=3, retention=None, clock=FakeClock())
    window.extend({"i": float(i)} for i in range(5))
    assert window.to_frame()["i"].tolist() == [2.0, 3.0, 4.0]


def test_retention_drops_old_rows_as_the_clock_moves() -> None:
    clock = FakeClock()
    window = Window(retention=timedelta(days=2), clock=clock)
    window.append({"i": 0.0})
    clock.advance(days=1)
    window.append({"i": 1.0})
    assert len(window) == 2
    clock.advance(days=1, seconds=1)
    assert len(window) == 1
    assert window.to_frame()["i"].tolist() == [1.0]
    clock.advance(days=1)
    assert window.prune() == 1
    assert len(window) == 0


def test_time_slices_select_current_and_reference_periods() -> None:
    clock = FakeClock()
    window = Window(clock=clock)
    for hour in range(6):
        window.append({"h": float(hour)}, ts=T0 + timedelta(hours=hour))
    clock.now = T0 + timedelta(hours=6)
    recent = window.to_frame(since=T0 + timedelta(hours=4))
    older = window.to_frame(until=T0 + timedelta(hours=4))
    assert recent["h"].tolist() == [4.0, 5.0]
    assert older["h"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert window.to_frame(last=2)["h"].tolist() == [4.0, 5.0]


def test_late_rows_are_kept_in_time_order() -> None:
    clock = FakeClock(T0 + timedelta(hours=1))
    window = Window(clock=clock)
    window.append({"i": 2.0}, ts=T0 + timedelta(minutes=30))
    window.append({"i": 1.0}, ts=T0)
    assert window.to_frame()["i"].tolist() == [1.0, 2.0]


def test_ts_key_in_row_is_rejected() -> None:
    with pytest.raises(ValueError, match="ts="):
        Window(clock=FakeClock()).append({"ts": 1.0})


@pytest.mark.parametrize("kwargs", [{"max_rows": 0}, {"retention": timedelta(0)}])
def test_bad_window_limits_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="Expected"):
        Window(**kwargs)  # type: ignore[arg-type]


def test_store_keeps_one_window_per_model_version_and_forgets_expired_ones() -> None:
    clock = FakeClock()
    store = WindowStore(retention_days=1, clock=clock)
    store.append("detector", "1", {"x": 1.0})
    store.append("detector", "2", {"x": 2.0})
    clock.advance(hours=12)
    store.append("detector", "2", {"x": 3.0})
    assert store.keys() == [WindowKey("detector", "1"), WindowKey("detector", "2")]
    assert store.frame("detector", "2")["x"].tolist() == [2.0, 3.0]
    clock.advance(hours=13)
    assert store.prune() == {WindowKey("detector", "1"): 1, WindowKey("detector", "2"): 1}
    assert store.keys() == [WindowKey("detector", "2")]
    assert str(store.keys()[0]) == "detector@2"


def test_store_rejects_non_positive_retention() -> None:
    with pytest.raises(ValueError, match="retention_days has value 0"):
        WindowStore(retention_days=0)
