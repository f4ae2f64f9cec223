"""``canaryserve rollout``: start, watch and steer canary rollouts on a running canaryserve."""

from __future__ import annotations

import time
from typing import Any

import typer

from serving.cli.api import URL_OPTION, api

rollout_app = typer.Typer(
    help="Canary rollouts (talks to a running canaryserve).", no_args_is_help=True
)

# The commands that move one rollout by name (``POST /v1/rollouts/{id}/{action}``), with their
# help text; in this order in ``canaryserve rollout --help``.
ACTIONS: tuple[tuple[str, str], ...] = (
    ("pause", "Hold the rollout at its current weight."),
    ("resume", "Continue a paused rollout."),
    ("promote", "Promote the challenger now (moves the champion alias)."),
    ("abort", "Stop the rollout and send all traffic back to the champion."),
)


def _rollout_line(r: dict[str, Any]) -> str:
    spec = r.get("spec", {})
    return (
        f"{r['id']:<28} {spec.get('model', '?'):<9} v{r.get('champion_version')}"
        f"->v{spec.get('challenger_version')}  {r['state']:<12} weight {r.get('weight', 0):>5}"
        f"  failed checks {r.get('failed_checks', 0)}"
        + (f"  ({r['ended_reason']})" if r.get("ended_reason") else "")
    )


def _ts(value: Any) -> str:
    import datetime as dt

    if not isinstance(value, int | float):
        return "?"
    return dt.datetime.fromtimestamp(value).strftime("%H:%M:%S")


@rollout_app.command("start")
def rollout_start(
    model: str = typer.Argument(..., help="Model name, e.g. detector."),
    version: int = typer.Option(..., "--version", help="Challenger version."),
    steps: str | None = typer.Option(None, help="Canary weights, e.g. 5,25,50,100."),
    interval: str = typer.Option("30s", help="Analysis interval per step (30s, 2m)."),
    mode: str = typer.Option("canary", help="canary | shadow-then-canary."),
    threshold: int = typer.Option(2, help="Failed checks before rollback."),
    min_requests: int = typer.Option(20, help="Requests per arm before any verdict."),
    url: str = URL_OPTION,
) -> None:
    """Start a rollout: deploy the challenger, then shift traffic step by step."""
    spec: dict[str, Any] = {
        "model": model,
        "challenger_version": version,
        "mode": mode,
        "interval": interval,
        "threshold": threshold,
        "min_requests": min_requests,
    }
    if steps:
        try:
            spec["step_weights"] = [float(x) for x in steps.split(",") if x.strip()]
        except ValueError:
            typer.secho(
                f"error: --steps {steps!r} must be numbers like 5,25,50,100",
                fg=typer.colors.RED,
                err=True,
            )
            raise typer.Exit(code=2) from None
    r = api("POST", url, "/v1/rollouts", json=spec)
    typer.echo(f"started {r['id']} ({r['state']})")


@rollout_app.command("status")
def rollout_status(
    rollout_id: str | None = typer.Argument(None, help="A rollout id (default: active ones)."),
    watch: bool = typer.Option(False, "--watch", help="Refresh every 2 s until Ctrl-C."),
    url: str = URL_OPTION,
) -> None:
    """Show active rollouts, or one rollout with its latest events."""
    while True:
        if rollout_id:
            r = api("GET", url, f"/v1/rollouts/{rollout_id}")
            typer.echo(_rollout_line(r))
            for e in r.get("events", [])[-8:]:
                typer.echo(
                    f"  {_ts(e.get('ts'))}  {e.get('kind'):<16} "
                    f"{e.get('from_state')}->{e.get('to_state')} weight {e.get('weight')}"
                )
        else:
            rows = api("GET", url, "/v1/rollouts", params={"active": "true"})["rollouts"]
            typer.echo("\n".join(_rollout_line(r) for r in rows) or "no active rollouts")
        if not watch:
            return
        time.sleep(2)
        typer.echo("")


@rollout_app.command("history")
def rollout_history(url: str = URL_OPTION) -> None:
    """Every rollout, newest first."""
    rows = api("GET", url, "/v1/rollouts")["rollouts"]
    rows.sort(key=lambda r: r.get("created_at", 0), reverse=True)
    typer.echo("\n".join(_rollout_line(r) for r in rows) or "no rollouts yet")


def _add_action_command(action: str, help_text: str) -> None:
    """Register ``rollout <action> ROLLOUT_ID``: POST the action, print the rollout it left."""

    def command(rollout_id: str, url: str = URL_OPTION) -> None:
        r = api("POST", url, f"/v1/rollouts/{rollout_id}/{action}")
        typer.echo(_rollout_line(r))

    command.__name__ = command.__qualname__ = f"rollout_{action}"
    command.__doc__ = help_text
    rollout_app.command(action)(command)


for _action, _help in ACTIONS:
    _add_action_command(_action, _help)
