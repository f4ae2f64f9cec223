"""Which drifting reports raise an alert: disjoint windows, never the same rows twice."""

from __future__ import annotations

import http.server
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from drift.alerts import AlertGate, Window, champion_alert, post_webhook, redact_url
from drift.features import FEATURES_VERSION
from drift.monitor import DriftMonitor
from serving.config import DriftSpec


def test_the_gate_admits_disjoint_windows_after_the_cooldown_only() -> None:
    gate = AlertGate(cooldown_s=100.0)
    key = ("detector", "1")
    assert gate.admit(key, Window(10.0, 20.0), now=1000.0)
    assert not gate.admit(key, Window(10.0, 20.0), now=2000.0)  # the same rows
    assert not gate.admit(key, Window(20.0, 30.0), now=2000.0)  # shares the newest row
    assert not gate.admit(key, Window(21.0, 30.0), now=1099.0)  # disjoint, in the cooldown
    assert gate.admit(("detector", "2"), Window(10.0, 20.0), now=1000.0)  # per version
    assert gate.admit(key, Window(21.0, 30.0), now=1100.0)
    assert not gate.admit(key, Window(25.0, 40.0), now=5000.0)  # overlaps the admitted one


def test_an_alert_names_the_report_its_features_and_groups() -> None:
    report = {
        "id": "r1",
        "model": "detector",
        "version": "3",
        "html_url": "/v1/drift/reports/r1",
        "verdict": {
            "drift_share": 0.25,
            "drifted_features": ["brightness"],
            "drifted_groups": ["input"],
        },
    }
    alert = champion_alert(report, now=7.0)
    assert alert["kind"] == "champion_drift" and alert["report_id"] == "r1"
    assert alert["drifted_groups"] == ["input"] and alert["created_at"] == 7.0
    assert alert["version"] == "3" and alert["report_url"] == "/v1/drift/reports/r1"
    assert alert["drift_share"] == 0.25 and alert["drifted_features"] == ["brightness"]
    assert "never rolled back" in alert["note"]


def _frame(n: int, seed: int, brightness: float = 120.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"brightness": rng.normal(brightness, 10, n), "sharpness": rng.normal(300, 40, n)}
    )


def _ingest(monitor: DriftMonitor, frame: pd.DataFrame, ts: float, tag: str) -> None:
    monitor.ingest(
        [
            {"model": "detector", "version": "1", "source": "live", "request_id": f"{tag}{i}"}
            | {"ts": ts + i * 1e-3}
            | row
            for i, row in enumerate(frame.to_dict("records"))
        ]
    )


def _monitor(tmp_path: Path, now: list[float], alerts: list[dict[str, Any]]) -> DriftMonitor:
    record = {"n": 1, "source": "evaluation", "features": FEATURES_VERSION}
    return DriftMonitor(
        DriftSpec(report_every_rows=40, min_rows=30, window_rows=60, alert_cooldown_s=0),
        tmp_path,
        references=lambda m, v: (record, _frame(200, 0)),
        champions=lambda: {"detector": 1},
        clock=lambda: now[0],
        notify=alerts.append,
    )


def test_scheduled_reports_judge_each_row_once(tmp_path: Path) -> None:
    now, alerts = [1_800_000_000.0], []
    monitor = _monitor(tmp_path, now, alerts)
    _ingest(monitor, _frame(50, 1), now[0], "a")
    (first,) = monitor.run_scheduled()
    assert first["verdict"]["current_rows"] == 50
    _ingest(monitor, _frame(20, 2), now[0] + 10, "b")
    now[0] += 1000  # past report_interval_s, but 20 new rows are fewer than min_rows
    assert monitor.run_scheduled() == []
    _ingest(monitor, _frame(20, 3), now[0], "c")
    (second,) = monitor.run_scheduled()
    assert second["verdict"]["current_rows"] == 40  # only rows newer than the first window
    # An on-demand look takes the newest window_rows, whatever was judged before.
    assert monitor.report("detector", 1)["verdict"]["current_rows"] == 60


def test_the_same_drifting_rows_alert_once_and_new_ones_again(tmp_path: Path) -> None:
    now, alerts = [1_800_000_000.0], []
    monitor = _monitor(tmp_path, now, alerts)
    _ingest(monitor, _frame(60, 4, brightness=60.0), now[0], "a")
    first = monitor.report("detector", 1)
    again = monitor.report("detector", 1)
    assert first["status"] == again["status"] == "drift"
    assert [a["report_id"] for a in alerts] == [first["id"]]
    _ingest(monitor, _frame(60, 5, brightness=60.0), now[0] + 60, "b")
    third = monitor.report("detector", 1)
    assert [a["report_id"] for a in alerts] == [first["id"], third["id"]]
    assert alerts[0]["drifted_groups"] == ["input"]


def _wait_for(pred: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("status", [None, 403])
def test_a_failed_webhook_is_logged_without_its_secret(
    status: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    """A chat service's hook URL is its credential: the log names the host, never the path,
    the query or the user-info, whether the server refused it or could not be reached."""
    secret = "T000/B000/XXXXsecretXXXX"
    if status is None:
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = None
    else:

        class Refuse(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.send_error(status)

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), Refuse)
        port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
    auth = "user:pw@" if status is None else ""  # urllib sends no user-info: refused as is
    url = f"http://{auth}127.0.0.1:{port}/services/{secret}?token=abc"
    try:
        with caplog.at_level(logging.WARNING, logger="canaryserve.drift"):
            post_webhook(url, {"alert": "drift"}, timeout_s=5)
            assert _wait_for(lambda: "webhook" in caplog.text)
    finally:
        if server is not None:
            server.shutdown()
    assert f"http://127.0.0.1:{port}/" in caplog.text
    for leaked in (secret, "token=abc", "user:pw", "services"):
        assert leaked not in caplog.text
    if status is not None:
        assert f"HTTPError {status}" in caplog.text


def test_redact_url_keeps_scheme_host_and_port_only() -> None:
    assert redact_url("https://hooks.example.com/services/a/b?x=1") == "https://hooks.example.com/…"
    assert redact_url("http://u:p@[::1]:9000/x") == "http://::1:9000/…"
