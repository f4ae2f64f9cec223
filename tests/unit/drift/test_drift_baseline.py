"""Baselines: a version's reference frozen from its own traffic or a folder of images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from deployments.types import Detection
from drift.features import FEATURES_VERSION
from drift.monitor import DriftMonitor
from drift.reference.baseline import (
    BaselineRequest,
    dir_rows,
    image_files,
    read_images,
    traffic_rows,
)
from drift.windows import META_KEYS
from serving.config import DriftSpec
from serving.errors import InvalidBaseline, NotEnoughBaselineRows, RegistryError


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Registry:
    """The monitor's registry side: references per version, and the freezes it was asked for."""

    def __init__(self, first: pd.DataFrame) -> None:
        self.records: dict[tuple[str, int], tuple[dict[str, Any], pd.DataFrame]] = {
            ("detector", 1): ({"n": 1, "source": "evaluation", "features": FEATURES_VERSION}, first)
        }
        self.frozen: list[tuple[str, int, pd.DataFrame, str, dict[str, Any]]] = []

    def reference(self, model: str, version: int) -> tuple[dict[str, Any], pd.DataFrame] | None:
        return self.records.get((model, version))

    def freeze(
        self, model: str, version: int, frame: pd.DataFrame, source: str, meta: dict[str, Any]
    ) -> dict[str, Any]:
        n = self.records[(model, version)][0]["n"] + 1 if (model, version) in self.records else 1
        record = {"n": n, "source": source, "rows": len(frame), "features": FEATURES_VERSION}
        record |= meta
        self.records[(model, version)] = (record, frame)
        self.frozen.append((model, version, frame, source, meta))
        return record


def _frame(n: int, seed: int, brightness: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "brightness": rng.normal(brightness, 10, n),
            "sharpness": rng.normal(300, 40, n),
            "pred_count": rng.integers(0, 3, n).astype(float),
        }
    )


def _ingest(monitor: DriftMonitor, frame: pd.DataFrame, ts: float, tag: str) -> None:
    monitor.ingest(
        [
            {"model": "detector", "version": "1", "source": "live", "request_id": f"{tag}{i}"}
            | {"ts": ts}
            | row
            for i, row in enumerate(frame.to_dict("records"))
        ]
    )


@pytest.fixture
def setup(tmp_path: Path) -> tuple[DriftMonitor, Clock, Registry]:
    clock = Clock()
    # The evaluation reference is bright; the traffic the version really sees is dimmer.
    registry = Registry(_frame(200, 0, brightness=160.0))
    spec = DriftSpec(min_rows=30, window_rows=100)
    monitor = DriftMonitor(
        spec,
        tmp_path / "drift",
        references=registry.reference,
        champions=lambda: {"detector": 1},
        clock=clock,
        freeze=registry.freeze,
    )
    return monitor, clock, registry


def test_a_traffic_baseline_makes_the_version_s_own_traffic_the_reference(setup: Any) -> None:
    monitor, clock, registry = setup
    _ingest(monitor, _frame(120, 1, brightness=100.0), clock.now, "a")
    clock.now += 5
    assert monitor.report("detector", 1)["verdict"]["status"] == "drift"

    request = BaselineRequest(model="detector", version=1, rows=100)
    frame = monitor.traffic_baseline(request)
    assert len(frame) == 100
    assert not set(META_KEYS) & set(frame.columns)  # features only, as a reference holds
    out = monitor.freeze_baseline(request, frame, {"rows_from": "traffic"})
    assert out["reference"]["n"] == 2 and out["reference"]["baseline"] == "newest 100 live rows"
    assert out["reference"]["current_since"] == clock.now
    ((model, version, frozen, source, _),) = registry.frozen
    assert (model, version, source, len(frozen)) == ("detector", 1, "traffic", 100)
    (entry,) = monitor.status()["versions"]
    assert entry["reference"] == {
        "n": 2,
        "source": "traffic",
        "baseline": "newest 100 live rows",
        "current_since": clock.now,
        "rows": 100,
    }

    clock.now += 5
    _ingest(monitor, _frame(60, 2, brightness=100.0), clock.now, "b")
    report = monitor.report("detector", 1)
    assert report["verdict"]["status"] == "no_drift"
    assert report["against"].startswith("reference #2 (traffic, 100 rows)")
    # Only the rows captured after the freeze are judged: the 120 before it are not mixed in.
    assert report["verdict"]["current_rows"] == 60

    clock.now += 5
    _ingest(monitor, _frame(60, 3, brightness=40.0), clock.now, "c")
    assert monitor.report("detector", 1)["verdict"]["status"] == "drift"


def test_before_any_row_after_a_freeze_the_report_has_no_verdict(setup: Any) -> None:
    monitor, clock, _ = setup
    _ingest(monitor, _frame(120, 1, brightness=100.0), clock.now, "a")
    request = BaselineRequest(model="detector", version=1)
    monitor.freeze_baseline(request, monitor.traffic_baseline(request), {})
    report = monitor.report("detector", 1)
    assert report["verdict"]["status"] == "insufficient_data"
    assert report["verdict"]["current_rows"] == 0
    assert monitor.run_scheduled() == []


def test_a_time_window_baseline_takes_only_the_rows_of_that_window(setup: Any) -> None:
    monitor, clock, _ = setup
    _ingest(monitor, _frame(50, 1, brightness=100.0), clock.now - 7200, "old")
    _ingest(monitor, _frame(40, 2, brightness=100.0), clock.now - 60, "new")
    frame = monitor.traffic_baseline(BaselineRequest(model="detector", version=1, window_s=3600))
    assert len(frame) == 40


def test_too_few_live_rows_refuse_the_baseline_and_freeze_nothing(setup: Any) -> None:
    monitor, clock, registry = setup
    _ingest(monitor, _frame(10, 1, brightness=100.0), clock.now, "a")
    with pytest.raises(NotEnoughBaselineRows, match="10 live rows match"):
        monitor.traffic_baseline(BaselineRequest(model="detector", version=1))
    assert registry.frozen == []


def test_a_monitor_without_a_registry_cannot_freeze(tmp_path: Path) -> None:
    monitor = DriftMonitor(
        DriftSpec(), tmp_path / "d", references=lambda m, v: None, champions=lambda: {}
    )
    request = BaselineRequest(model="detector", version=1)
    with pytest.raises(RegistryError):
        monitor.freeze_baseline(request, _frame(40, 0, 100.0), {})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rows": 10, "window_s": 60.0}, "both given"),
        ({"dir": "/tmp/x"}, "source is 'traffic'"),
        ({"source": "dir"}, "no dir was given"),
        ({"source": "dir", "dir": "/tmp/x", "window_s": 60.0}, "it is for traffic"),
        ({"rows": 0}, "greater than or equal to 1"),
        ({"source": "bucket"}, "'traffic' or 'dir'"),
        ({"extra": 1}, "Extra inputs are not permitted"),
    ],
)
def test_a_baseline_request_that_cannot_be_met_is_refused_with_the_reason(
    body: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        BaselineRequest.model_validate({"model": "detector", "version": 1, **body})


def test_requests_say_how_their_rows_were_chosen() -> None:
    assert BaselineRequest(model="m", version=1).described == "newest 500 live rows"
    assert BaselineRequest(model="m", version=1, window_s=3600).described == (
        "live rows of the last 3600 s"
    )
    assert BaselineRequest(model="m", version=1, source="dir", dir="/d").described == (
        "images in /d"
    )


def test_traffic_rows_drop_the_capture_metadata() -> None:
    live = _frame(40, 0, 100.0).assign(model="detector", ts=1.0, request_id="r")
    got = traffic_rows(live, skip=("model", "ts", "request_id"), min_rows=30)
    assert list(got.columns) == ["brightness", "sharpness", "pred_count"]
    with pytest.raises(NotEnoughBaselineRows):
        traffic_rows(live, skip=(), min_rows=41)


def _write_images(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(n):
        image = rng.integers(0, 255, (64 + i, 80, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"img{i:03d}.png"), image)


def test_image_files_are_the_folder_s_images_in_name_order(tmp_path: Path) -> None:
    _write_images(tmp_path / "photos", 5)
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    files = image_files(str(tmp_path / "photos"), None)
    assert [f.name for f in files] == [f"img{i:03d}.png" for i in range(5)]
    assert len(image_files(str(tmp_path / "photos"), 2)) == 2
    with pytest.raises(InvalidBaseline, match="absolute path"):
        image_files("photos", None)
    with pytest.raises(InvalidBaseline, match="not a folder"):
        image_files(str(tmp_path / "missing"), None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidBaseline, match="no images"):
        image_files(str(tmp_path / "empty"), None)


def test_unreadable_and_tiny_files_are_skipped_and_named(tmp_path: Path) -> None:
    _write_images(tmp_path / "p", 2)
    (tmp_path / "p" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    cv2.imwrite(str(tmp_path / "p" / "tiny.png"), np.zeros((4, 4, 3), np.uint8))
    images, skipped = read_images(sorted((tmp_path / "p").iterdir()))
    assert len(images) == 2 and images[0].shape == (64, 80, 3)
    assert sorted(skipped) == ["broken.jpg", "tiny.png"]


def test_a_folder_baseline_runs_every_image_through_the_version(tmp_path: Path) -> None:
    _write_images(tmp_path / "p", 35)
    seen: list[int] = []

    def predict(images: list[np.ndarray]) -> list[list[Detection]]:
        seen.extend(img.shape[0] for img in images)
        return [[Detection((0.0, 0.0, 10.0, 10.0), 0.9)] for _ in images]

    request = BaselineRequest(model="detector", version=1, source="dir", dir=str(tmp_path / "p"))
    frame, detail = dir_rows(request, "detection", predict, min_rows=30)
    assert sorted(seen) == list(range(64, 99))
    assert len(frame) == 35 and detail["images"] == 35
    assert (frame["pred_count"] == 1.0).all()
    assert "brightness" in frame.columns
    with pytest.raises(InvalidBaseline, match="a folder baseline is for image models"):
        dir_rows(request, "action", predict, min_rows=30)
    with pytest.raises(NotEnoughBaselineRows, match="35 readable images"):
        dir_rows(request, "detection", predict, min_rows=36)
