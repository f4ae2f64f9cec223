"""``canaryserve audit``: the audit trail, and the record of admin actions done from the CLI."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import typer

from serving.cli.api import URL_OPTION, api
from serving.cli.config import CONFIG_OPTION, data_dir, read_config

audit_app = typer.Typer(help="The audit trail of requests and admin actions.", no_args_is_help=True)


def _since(text: str | None) -> float | None:
    """``2026-11-23T10:00``, ``90m``, ``2h``, ``1d`` (ago) or epoch seconds."""
    if text is None:
        return None
    units = {"m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return dt.datetime.now(dt.UTC).timestamp() - float(text[:-1]) * units[text[-1]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        ts = dt.datetime.fromisoformat(text)
    except ValueError:
        typer.secho(f"error: --since {text!r}: use 2h, 1d, an ISO time or epoch seconds", err=True)
        raise typer.Exit(code=2) from None
    return (ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)).timestamp()


@audit_app.command("show")
def audit_show(request_id: str, url: str = URL_OPTION) -> None:
    """One request's record: caller, input hash, versions and routing per node, outcome."""
    typer.echo(json.dumps(api("GET", url, f"/v1/audit/{request_id}"), indent=2))


@audit_app.command("query")
def audit_query(
    since: str | None = typer.Option(None, help="2h, 1d, an ISO time or epoch seconds."),
    model: str | None = typer.Option(None),
    version: int | None = typer.Option(None),
    limit: int = typer.Option(50),
    url: str = URL_OPTION,
) -> None:
    """Recent requests (and admin actions), newest first."""
    params: dict[str, Any] = {"limit": limit}
    for key, value in (("since", _since(since)), ("model", model), ("version", version)):
        if value is not None:
            params[key] = value
    body = api("GET", url, "/v1/audit", params=params)
    for r in body["requests"]:
        when = dt.datetime.fromtimestamp(r["ts"], tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        versions = " ".join(f"{m}@v{n['version']}" for m, n in r["nodes"].items())
        typer.echo(
            f"{when}  {r['request_id'][:32]:<32} {r['route']:<22} {r['status']} "
            f"{r.get('error_code') or '':<20} {versions}  {r['caller']}"
        )
    for a in body["admin"]:
        when = dt.datetime.fromtimestamp(a["ts"], tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(
            f"{when}  admin {a['action']:<18} {a['target']:<30} {a['outcome']}  {a['actor']}"
        )


@audit_app.command("purge")
def audit_purge(
    older_than_days: float | None = typer.Option(None, help="Default: audit.retention_days."),
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Delete records (and stored inputs) past retention, from the configured database."""
    from serving.audit import open_store

    cfg = read_config(config)
    store = open_store(cfg.audit, data_dir())
    days = older_than_days if older_than_days is not None else cfg.audit.retention_days
    typer.echo(f"purged (older than {days:g} days): {store.purge(days)}")


def audit_admin(action: str, target: str, outcome: str = "ok", **detail: Any) -> None:
    """Record an admin action done from this CLI (the HTTP API records its own) in the
    configured audit trail; the actor is ``cli:<OS user>``. A trail that cannot be written is
    reported, but does not undo the action."""
    import getpass
    import time

    from serving.audit import AdminRecord, open_store

    cfg = read_config(None)
    if not cfg.audit.enabled:
        return
    try:
        store = open_store(cfg.audit, data_dir())
        try:
            store.write_admin(
                [
                    AdminRecord(
                        ts=time.time(),
                        actor=f"cli:{getpass.getuser()}",
                        action=action,
                        target=target,
                        detail=detail,
                        outcome=outcome,
                    )
                ]
            )
        finally:
            store.close()
    except Exception as e:
        typer.secho(f"warning: audit record not written: {e}", fg=typer.colors.YELLOW, err=True)
