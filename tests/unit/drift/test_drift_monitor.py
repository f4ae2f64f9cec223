from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from drift.evidently_adapter import workspace_projects
from drift.features import FEATURES_VERSION
from drift.monitor import DriftMonitor
from serving.config import DriftSpec
from serving.errors import NoReference, UnknownReport


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _frame(
    n: int, seed: int, *, brightness: float = 120.0, confidence: float = 0.8
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "brightness": rng.normal(brightness, 10, n),
            "sharpness": rng.normal(300, 40, n),
            "pred_count": rng.integers(0, 3, n).astype(float),
            "pred_mean_confidence": rng.normal(confidence, 0.05, n),
        }
    )


def _rows(
    frame: pd.DataFrame, version: int, source: str, ts: float, ids: list[str]
) -> list[dict[str, Any]]:
    return [
        {
            "model": "detector",
            "version": str(version),
            "source": source,
            "request_id": rid,
            "ts": ts,
            **row,
        }
        for rid, row in zip(ids, frame.to_dict("records"), strict=True)
    ]


@pytest.fixture
def setup(tmp_path: Path) -> tuple[DriftMonitor, Clock, list[dict[str, Any]]]:
    clock = Clock()
    alerts: list[dict[str, Any]] = []
    refs = {("detector", 1): _frame(200, 0), ("detector", 2): _frame(200, 1)}
    spec = DriftSpec(report_every_rows=60, min_rows=30, window_rows=60, alert_cooldown_s=600)
    monitor = DriftMonitor(
        spec,
        tmp_path / "drift",
        references=lambda m, v: (
            ({"n": 1, "source": "evaluation", "features": FEATURES_VERSION}, refs[(m, v)])
            if (m, v) in refs
            else None
        ),
        champions=lambda: {"detector": 1},
        clock=clock,
        notify=alerts.append,
    )
    return monitor, clock, alerts


def test_scheduled_reports_flip_from_no_drift_to_drift_and_alert_once(
    setup: Any, tmp_path: Path
) -> None:
    monitor, clock, alerts = setup
    monitor.ingest(_rows(_frame(60, 5), 1, "live", clock.now, [f"a{i}" for i in range(60)]))
    (first,) = monitor.run_scheduled()
    assert first["status"] == "no_drift" and first["kind"] == "reference"
    assert alerts == []
    clock.now += 10
    dark = _frame(60, 6, brightness=40.0, confidence=0.4)
    monitor.ingest(_rows(dark, 1, "live", clock.now, [f"b{i}" for i in range(60)]))
    (second,) = monitor.run_scheduled()
    assert second["status"] == "drift"
    assert {"brightness", "pred_mean_confidence"} <= set(second["verdict"]["drifted_features"])
    feature = {f["name"]: f for f in second["verdict"]["features"]}["brightness"]
    assert feature["method"] and feature["threshold"] > 0 and feature["score"] is not None
    # Files, the index and the Evidently workspace all have it.
    assert monitor.reports.html(second["id"]).lstrip().lower().startswith("<!doctype html")
    assert (tmp_path / "drift" / "reports" / f"{second['id']}.json").is_file()
    projects = workspace_projects(tmp_path / "drift" / "workspace")
    assert len(projects["canaryserve detector"]) == 2
    # One alert for the champion, linking the report; the cooldown stops a repeat.
    assert [a["report_id"] for a in alerts] == [second["id"]]
    monitor.ingest(_rows(dark, 1, "live", clock.now + 1, [f"c{i}" for i in range(60)]))
    monitor.run_scheduled()
    assert len(alerts) == 1
    status = monitor.status()
    (entry,) = status["versions"]
    assert entry["latest"]["status"] == "drift" and entry["rows"] == 180
    assert status["alerts"][0]["report_id"] == second["id"]


def test_no_report_before_min_rows_and_none_for_a_challenger_alert(setup: Any) -> None:
    monitor, clock, alerts = setup
    monitor.ingest(_rows(_frame(20, 5), 2, "live", clock.now, [f"a{i}" for i in range(20)]))
    clock.now += 10_000  # past report_interval_s
    assert monitor.run_scheduled() == []  # 20 < min_rows: no verdict, nothing saved
    monitor.ingest(
        _rows(
            _frame(40, 7, brightness=30.0, confidence=0.3),
            2,
            "live",
            clock.now,
            [f"b{i}" for i in range(40)],
        )
    )
    (report,) = monitor.run_scheduled()
    assert report["status"] == "drift" and report["version"] == "2"
    assert alerts == []  # v2 is not the champion


def test_on_demand_report_with_too_few_rows_is_kept_with_its_reason(setup: Any) -> None:
    monitor, clock, _ = setup
    monitor.ingest(_rows(_frame(5, 5), 1, "live", clock.now, [f"a{i}" for i in range(5)]))
    report = monitor.report("detector", 1)
    assert report["status"] == "insufficient_data"
    assert "30 rows" in report["verdict"]["reason"]
    assert monitor.get_report(report["id"])["id"] == report["id"]
    with pytest.raises(UnknownReport):
        monitor.reports.html(report["id"])  # no Evidently run, no HTML
    # No frozen reference: a verdict of its own, never "drift".
    missing = monitor.report("detector", 9)
    assert missing["status"] == "no_reference" and missing["drift_share"] == 0.0
    assert "no frozen drift reference" in missing["verdict"]["reason"]
    assert monitor.get_report(missing["id"])["status"] == "no_reference"
    with pytest.raises(NoReference):
        monitor.reference("detector", 9)


def test_rollout_drift_pairs_shadow_answers_with_the_champion(setup: Any) -> None:
    monitor, clock, _ = setup
    ids = [f"r{i}" for i in range(50)]
    inputs = _frame(50, 11)
    monitor.ingest(_rows(inputs, 1, "live", clock.now, ids))
    shifted = inputs.assign(
        pred_mean_confidence=inputs["pred_mean_confidence"] - 0.3,
        pred_count=inputs["pred_count"] + 2,
    )
    # Only 40 of the 50 requests were mirrored; plus noise from an unrelated request.
    monitor.ingest(_rows(shifted.head(40), 2, "shadow", clock.now + 0.5, ids[:40]))
    out = monitor.rollout_drift("detector", 1, 2, clock.now - 1, 20)
    assert out.pairs == 40
    vs = out.vs_champion
    assert vs.status == "drift" and vs.current_rows == 40
    assert set(vs.drifted_features) == {"pred_count", "pred_mean_confidence"}
    record = monitor.get_report(vs.report_id)
    assert record["kind"] == "challenger_vs_champion" and record["trigger"] == "rollout"
    # Input features are never compared here: the inputs are identical by construction.
    assert {f["name"] for f in record["verdict"]["features"]} == {
        "pred_count",
        "pred_mean_confidence",
    }
    assert out.vs_reference is not None and out.champion_vs_reference is not None
    # Same counts: the cached answer comes back without a new report.
    again = monitor.rollout_drift("detector", 1, 2, clock.now - 1, 20)
    assert again.vs_champion.report_id == vs.report_id


def test_identical_paired_answers_do_not_drift(setup: Any) -> None:
    monitor, clock, _ = setup
    ids = [f"r{i}" for i in range(40)]
    same = _frame(40, 3)
    monitor.ingest(_rows(same, 1, "live", clock.now, ids))
    monitor.ingest(_rows(same, 2, "shadow", clock.now, ids))
    out = monitor.rollout_drift("detector", 1, 2, clock.now - 1, 20)
    assert out.vs_champion.status == "no_drift"
    assert out.vs_champion.drift_share == 0.0


def test_a_reference_from_older_feature_definitions_gives_no_verdict(tmp_path: Path) -> None:
    old = {"n": 1, "source": "evaluation", "features": FEATURES_VERSION - 1}
    monitor = DriftMonitor(
        DriftSpec(), tmp_path, references=lambda m, v: (old, _frame(50, 0)), champions=dict
    )
    monitor.ingest(_rows(_frame(40, 1), 1, "live", time.time(), [f"a{i}" for i in range(40)]))
    report = monitor.report("detector", 1)
    assert report["status"] == "no_reference"
    assert f"feature set v{FEATURES_VERSION - 1}" in report["verdict"]["reason"]
    assert report["verdict"]["current_rows"] == 40 and report["verdict"]["features"] == []
    with pytest.raises(NoReference, match=f"feature set v{FEATURES_VERSION - 1}"):
        monitor.reference("detector", 1)


def test_rows_and_reports_survive_a_restart_and_retention_prunes(tmp_path: Path) -> None:
    clock = Clock()
    ref = _frame(100, 0)
    kw: dict[str, Any] = {
        "references": lambda m, v: ({"n": 1, "features": FEATURES_VERSION}, ref),
        "champions": dict,
        "clock": clock,
    }
    spec = DriftSpec(retention_days=1, min_rows=10)
    first = DriftMonitor(spec, tmp_path, **kw)
    first.ingest(_rows(_frame(30, 1), 1, "live", clock.now, [f"a{i}" for i in range(30)]))
    rid = first.report("detector", 1)["id"]
    second = DriftMonitor(spec, tmp_path, **kw)
    assert second.windows.count("detector", 1) == 30
    assert second.get_report(rid)["status"] == "no_drift"
    clock.now += 2 * 86400
    assert second.prune() == {"rows": 30, "reports": 1}
    assert not (tmp_path / "reports" / f"{rid}.html").exists()
