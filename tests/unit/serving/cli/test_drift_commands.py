"""``drift baseline`` and ``drift status``: what they send, and what they print."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from serving.cli import app
from serving.cli import drift as drift_cli

runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("30m", 1800.0), ("1h", 3600.0), ("2d", 172800.0), ("45", 45.0)],
)
def test_windows_are_read_in_seconds_minutes_hours_and_days(text: str, seconds: float) -> None:
    assert drift_cli.parse_window(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "-5m", "0s"])
def test_a_window_that_is_no_duration_is_refused(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        drift_cli.parse_window(text)


def _fake(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict[str, Any]]]:
    calls: list[tuple[str, str, dict[str, Any]]] = []

    def fake_api(method: str, url: str, path: str, **kw: Any) -> dict[str, Any]:
        calls.append((method, path, kw.get("json", {})))
        return {
            "model": "detector",
            "version": 3,
            "reference": {
                "n": 2,
                "rows": 500,
                "baseline": "newest 500 live rows",
                "current_since": 1_800_000_000.0,
                "skipped_count": 1,
            },
        }

    monkeypatch.setattr(drift_cli, "api", fake_api)
    return calls


@pytest.mark.parametrize(
    ("args", "body"),
    [
        ([], {"model": "detector"}),
        (["--from-traffic", "--rows", "200"], {"model": "detector", "rows": 200}),
        (
            ["--window", "1h", "--version", "3"],
            {"model": "detector", "window_s": 3600.0, "version": 3},
        ),
    ],
)
def test_baseline_posts_what_was_asked(
    args: list[str], body: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fake(monkeypatch)
    result = runner.invoke(app, ["drift", "baseline", "detector", *args])
    assert result.exit_code == 0, result.output
    assert calls == [("POST", "/v1/drift/baselines", body)]
    assert "froze reference #2 from 500 rows (newest 500 live rows)" in result.output
    assert "2027-01-15 08:00:00Z" in result.output and "skipped 1" in result.output


def test_a_folder_baseline_sends_the_folder_s_absolute_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = _fake(monkeypatch)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["drift", "baseline", "detector", "--from-dir", "photos"])
    assert result.exit_code == 0, result.output
    assert calls[0][2] == {"model": "detector", "source": "dir", "dir": str(tmp_path / "photos")}
    refused = runner.invoke(
        app, ["drift", "baseline", "detector", "--from-dir", "p", "--window", "1h"]
    )
    assert refused.exit_code != 0 and calls[1:] == []


def test_status_names_the_drifted_groups_and_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    latest = {
        "report_id": "r1",
        "status": "drift",
        "drift_share": 0.25,
        "drifted_features": ["brightness"],
        "drifted_groups": ["input", "embedding"],
        "created_at": 1_800_000_000.0,
        "against": "reference #2 (traffic, 500 rows)",
    }
    reference = {"n": 2, "source": "traffic", "rows": 500, "current_since": 1_800_000_000.0}
    entry = {"model": "detector", "version": "1", "rows": 80, "latest": latest}
    body = {"versions": [entry | {"reference": reference}]}
    monkeypatch.setattr(drift_cli, "api", lambda *a, **kw: body)
    result = runner.invoke(app, ["drift", "status"])
    assert result.exit_code == 0, result.output
    assert (
        "detector v1: 80 rows (reference #2: traffic, 500 rows, judging rows since "
        "2027-01-15 08:00:00Z), drift (share 0.25, groups: input, embedding" in result.output
    )
    assert "against reference #2 (traffic, 500 rows)" in result.output


def test_status_says_when_capture_shed_rows_to_keep_its_cpu_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = {"versions": [], "alerts": [], "capture": {"dropped_rows": 0, "shed_rows": 42}}
    monkeypatch.setattr(drift_cli, "api", lambda *a, **kw: body)
    result = runner.invoke(app, ["drift", "status"])
    assert result.exit_code == 0, result.output
    assert "capture: 42 rows shed on this ingress replica" in result.output
    assert "dropped" not in result.output
