"""``canaryserve drift``: latest verdicts, reports on demand (talks to a running canaryserve)."""

from __future__ import annotations

import datetime as dt
import tempfile
import webbrowser
from pathlib import Path
from typing import Any

import typer

from serving.cli.api import URL_OPTION, api

drift_app = typer.Typer(help="Drift verdicts and Evidently reports.", no_args_is_help=True)


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _verdict_lines(report: dict[str, Any]) -> list[str]:
    verdict = report.get("verdict", report)
    lines = [
        f"{report.get('model')} v{report.get('version')}  {verdict.get('status')}  "
        f"drift share {verdict.get('drift_share', 0):.2f} "
        f"(threshold {verdict.get('drift_share_threshold', 0.5):.2f})  "
        f"rows: reference {verdict.get('reference_rows')}, current {verdict.get('current_rows')}"
    ]
    for f in verdict.get("features", []):
        score = "-" if f.get("score") is None else f"{f['score']:.4g}"
        mark = "DRIFT" if f.get("drifted") else "ok"
        lines.append(
            f"  {f['name']:<24} {mark:<5} {f['method']:<28} score {score:<10} "
            f"threshold {f['threshold']:.4g}"
        )
    if verdict.get("reason"):
        lines.append(f"  ({verdict['reason']})")
    return lines


@drift_app.command("status")
def drift_status(url: str = URL_OPTION) -> None:
    """Latest verdict per model version, and recent champion drift alerts."""
    body = api("GET", url, "/v1/drift")
    versions = body.get("versions", [])
    if not versions:
        typer.echo("no captured rows yet")
    for entry in versions:
        latest = entry.get("latest")
        head = f"{entry['model']} v{entry['version']}: {entry['rows']} rows"
        if latest is None:
            typer.echo(f"{head}, no report yet")
            continue
        drifted = ", ".join(latest["drifted_features"]) or "none"
        typer.echo(
            f"{head}, {latest['status']} (share {latest['drift_share']:.2f}, drifted: {drifted}) "
            f"at {_when(latest.get('created_at'))}  report {latest['report_id']}"
        )
    for alert in body.get("alerts", [])[:5]:
        typer.secho(
            f"ALERT {_when(alert['created_at'])} {alert['model']} v{alert['version']} "
            f"champion drift {alert['drift_share']:.2f} -> {url}{alert['report_url']}",
            fg=typer.colors.YELLOW,
        )
    capture = body.get("capture", {})
    if capture.get("dropped_rows"):
        typer.echo(f"capture: {capture['dropped_rows']} rows dropped on this ingress replica")


@drift_app.command("report")
def drift_report(
    model: str = typer.Argument(..., help="Model name, e.g. detector."),
    version: int | None = typer.Option(None, "--version", help="Default: the champion."),
    open_: bool = typer.Option(False, "--open", help="Open the HTML report in a browser."),
    url: str = URL_OPTION,
) -> None:
    """Run a drift report now (live window vs the version's frozen reference)."""
    body: dict[str, Any] = {"model": model}
    if version is not None:
        body["version"] = version
    report = api("POST", url, "/v1/drift/reports", json=body)
    typer.echo("\n".join(_verdict_lines(report)))
    typer.echo(f"report {report['id']}: {url}{report['html_url']}")
    if open_ and report.get("status") not in ("insufficient_data", "no_reference"):
        html = _fetch_html(url, report["html_url"])
        path = Path(tempfile.gettempdir()) / f"{report['id']}.html"
        path.write_text(html, encoding="utf-8")
        typer.echo(f"opening {path}")
        webbrowser.open(path.as_uri())


def _fetch_html(url: str, path: str) -> str:
    import httpx

    r = httpx.get(f"{url}{path}", timeout=60)
    r.raise_for_status()
    return r.text
