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
        ref = entry.get("reference")
        if ref:
            since = ref.get("current_since")
            head += (
                f" (reference #{ref.get('n')}: {ref.get('source')}, {ref.get('rows')} rows"
                + (f", judging rows since {_when(since)}" if since else "")
                + ")"
            )
        if latest is None:
            typer.echo(f"{head}, no report yet")
            continue
        drifted = ", ".join(latest["drifted_features"]) or "none"
        groups = ", ".join(latest.get("drifted_groups") or []) or "none"
        typer.echo(
            f"{head}, {latest['status']} (share {latest['drift_share']:.2f}, groups: {groups}, "
            f"drifted: {drifted}) at {_when(latest.get('created_at'))}  "
            f"report {latest['report_id']}"
        )
        if latest.get("against"):
            typer.echo(f"  against {latest['against']}")
    for alert in body.get("alerts", [])[:5]:
        typer.secho(
            f"ALERT {_when(alert['created_at'])} {alert['model']} v{alert['version']} "
            f"champion drift {alert['drift_share']:.2f} -> {url}{alert['report_url']}",
            fg=typer.colors.YELLOW,
        )
    capture = body.get("capture", {})
    if capture.get("dropped_rows"):
        typer.echo(f"capture: {capture['dropped_rows']} rows dropped on this ingress replica")
    if capture.get("shed_rows"):
        typer.echo(
            f"capture: {capture['shed_rows']} rows shed on this ingress replica "
            "(drift.capture_cpu_share spent: windows are a smaller sample)"
        )


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


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_window(text: str) -> float:
    """Seconds in ``90s``, ``30m``, ``1h``, ``2d`` (or a bare number of seconds)."""
    raw = text.strip().lower()
    unit = _UNITS.get(raw[-1:], None)
    number = raw[:-1] if unit is not None else raw
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise typer.BadParameter(
            f"window has value {text!r}; expected e.g. 90s, 30m, 1h, 2d"
        ) from None
    if not value > 0:
        raise typer.BadParameter(f"window has value {text!r}; expected a positive duration")
    return value


@drift_app.command("baseline")
def drift_baseline(
    model: str = typer.Argument(..., help="Model name, e.g. detector."),
    version: int | None = typer.Option(None, "--version", help="Default: the champion."),
    from_traffic: bool = typer.Option(
        False, "--from-traffic", help="The version's own live rows (the default source)."
    ),
    rows: int | None = typer.Option(
        None, "--rows", help="Traffic: the newest N rows (default 500). Folder: at most N images."
    ),
    window: str | None = typer.Option(
        None, "--window", help="Traffic: the rows of the last 90s / 30m / 1h / 2d."
    ),
    from_dir: Path | None = typer.Option(
        None, "--from-dir", help="A folder of images on the platform's machine (admin role)."
    ),
    url: str = URL_OPTION,
) -> None:
    """Freeze a new drift reference for a version from what it sees in use.

    Reports afterwards judge only rows captured after the freeze.
    """
    if from_dir is not None and (from_traffic or window is not None):
        raise typer.BadParameter("--from-dir cannot be combined with --from-traffic or --window")
    body: dict[str, Any] = {"model": model}
    if version is not None:
        body["version"] = version
    if rows is not None:
        body["rows"] = rows
    if from_dir is not None:
        body |= {"source": "dir", "dir": str(from_dir.expanduser().resolve())}
    elif window is not None:
        body["window_s"] = parse_window(window)
    out = api("POST", url, "/v1/drift/baselines", json=body, timeout=600)
    ref = out["reference"]
    typer.echo(
        f"{out['model']} v{out['version']}: froze reference #{ref['n']} from {ref['rows']} rows "
        f"({ref.get('baseline', ref.get('source'))}); reports now judge rows captured after "
        f"{_when(ref.get('current_since'))}"
    )
    if ref.get("skipped_count"):
        typer.echo(f"  skipped {ref['skipped_count']} unreadable or oversized files")


def _fetch_html(url: str, path: str) -> str:
    import httpx

    r = httpx.get(f"{url}{path}", timeout=60)
    r.raise_for_status()
    return r.text
