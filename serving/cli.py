"""``canaryserve`` command line: bootstrap, serve, models, predict."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import typer

from serving.cli_drift import drift_app
from serving.cli_http import URL_OPTION
from serving.cli_http import api as _api
from serving.cli_ops import audit_admin, audit_app, auth_line, keys_app
from serving.errors import CanaryError

app = typer.Typer(help="canaryserve: versioned vision models on Ray Serve.", no_args_is_help=True)
models_app = typer.Typer(help="Registered model versions.", no_args_is_help=True)
app.add_typer(models_app, name="models")
rollout_app = typer.Typer(
    help="Canary rollouts (talks to a running canaryserve).", no_args_is_help=True
)
app.add_typer(rollout_app, name="rollout")
app.add_typer(drift_app, name="drift")
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")


def _store() -> Any:
    from model_registry.mlflow_store import MlflowModelStore

    return MlflowModelStore()


def _fail(e: CanaryError) -> None:
    typer.secho(f"error [{e.code}]: {e.message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def run_bootstrap(store: Any) -> list[str]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from model_registry.bootstrap import bootstrap, references

    steps = len(references()) * 2
    with Progress(TextColumn("{task.description:<40}"), BarColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("bootstrap", total=steps)

        def progress(msg: str) -> None:
            bar.update(task, description=msg, advance=1 if "already" not in msg else 2)

        done = bootstrap(store, progress=progress)
        bar.update(task, completed=steps, description="bootstrap done")
    return done


@app.command()
def bootstrap() -> None:
    """Register the reference models (detector, ocr, action) if the registry lacks them."""
    from model_registry.settings import tracking_uri

    try:
        store = _store()
        done = run_bootstrap(store)
    except CanaryError as e:
        _fail(e)
    typer.echo(f"registry: {tracking_uri()}")
    typer.echo("registered: " + (", ".join(done) if done else "nothing (already bootstrapped)"))


@app.command()
def serve(
    config: Path | None = typer.Option(None, help="Config YAML (default: the packaged one)."),
    host: str | None = typer.Option(None, help="HTTP host (default from config)."),
    port: int | None = typer.Option(None, help="HTTP port (default from config)."),
    no_bootstrap: bool = typer.Option(False, help="Do not bootstrap an empty registry."),
) -> None:
    """Start Ray Serve with the configured pipelines; Ctrl-C stops it cleanly."""
    import ray
    from ray import serve as rserve

    from model_registry.settings import data_dir, tracking_uri
    from serving.app import deploy
    from serving.config import load_config

    try:
        overrides: dict[str, Any] = {"server": {}}
        if host:
            overrides["server"]["host"] = host
        if port:
            overrides["server"]["port"] = port
        cfg = load_config(config, overrides)
        store = _store()
        if store.is_empty() and not no_bootstrap:
            typer.echo("registry is empty: bootstrapping the reference models")
            run_bootstrap(store)
    except CanaryError as e:
        _fail(e)

    ray.init(
        num_cpus=cfg.server.ray_num_cpus,
        num_gpus=cfg.server.ray_num_gpus,
        include_dashboard=False,
        _metrics_export_port=cfg.server.metrics_export_port,
        logging_level="WARNING",
    )
    stopping = False

    def _stop(*_: Any) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        typer.echo("\nstopping canaryserve ...")
        rserve.shutdown()
        ray.shutdown()
        sys.exit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        rserve.start(http_options={"host": cfg.server.host, "port": cfg.server.port})
        plan = deploy(cfg, store)
        base = f"http://{cfg.server.host}:{cfg.server.port}"
        typer.secho(f"canaryserve is up at {base}", fg=typer.colors.GREEN, bold=True)
        typer.echo(f"  {auth_line(cfg)}")
        typer.echo(f"  API docs      {base}/docs")
        typer.echo(
            f"  pipelines     {', '.join(f'{base}/v1/pipelines/{p}' for p in cfg.pipelines)}"
        )
        typer.echo(
            f"  metrics       {base}/metrics  (Ray export: "
            f"http://127.0.0.1:{cfg.server.metrics_export_port}/metrics)"
        )
        typer.echo(f"  MLflow store  {tracking_uri()}  (artifacts under {data_dir()})")
        typer.echo("  served        " + ", ".join(b.deployment_name for b in plan.bindings))
        typer.echo("  auth          disabled (local default; bound to loopback)")
        typer.echo("Ctrl-C to stop.")
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        _stop()
    except CanaryError as e:
        rserve.shutdown()
        ray.shutdown()
        _fail(e)


@models_app.command("list")
def models_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List registered models, their versions and aliases."""
    try:
        store = _store()
        listing = store.list_models()
        out = {
            name: {
                "aliases": store.aliases(name),
                "versions": [
                    {"version": v.version, "description": v.description} for v in versions
                ],
            }
            for name, versions in listing.items()
        }
    except CanaryError as e:
        _fail(e)
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    if not out:
        typer.echo("no models registered (run `canaryserve bootstrap`)")
    for name, entry in out.items():
        aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(entry["aliases"].items())) or "-"
        typer.secho(f"{name}  [{aliases}]", bold=True)
        for v in entry["versions"]:
            typer.echo(f"  v{v['version']}  {v['description']}")


@models_app.command("register")
def models_register(
    model_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="Model directory."),
    description: str = typer.Option("", help="Version description."),
    alias: str | None = typer.Option(None, help="Also point this alias (e.g. challenger) at it."),
) -> None:
    """Check a model directory (loads, I/O matches the manifest, test prediction) and register."""
    from model_registry.validate import register_checked

    try:
        store = _store()
        info = register_checked(store, model_dir, description=description)
        if alias:
            store.set_alias(info.name, alias, info.version)
    except CanaryError as e:
        audit_admin("model.register", str(model_dir), e.code)
        _fail(e)
    audit_admin("model.register", f"{info.name}/{info.version}", source=str(model_dir), alias=alias)
    typer.echo(f"registered {info.name} v{info.version}" + (f" as @{alias}" if alias else ""))


@app.command()
def predict(
    image: Path = typer.Argument(..., exists=True, dir_okay=False, help="Image or video file."),
    pipeline: str = typer.Option("inspect", help="Pipeline to run."),
    url: str = typer.Option("http://127.0.0.1:8000", help="canaryserve base URL."),
    pin: str | None = typer.Option(None, help="Pin versions, e.g. 'detector=2'."),
) -> None:
    """Send a file to a running canaryserve and print the JSON answer."""
    import httpx

    field = (
        "video" if image.suffix.lower() in {".mp4", ".avi", ".mov", ".mkv", ".webm"} else ("image")
    )
    headers = {"X-Model-Version": pin} if pin else {}
    try:
        with image.open("rb") as f:
            r = httpx.post(
                f"{url}/v1/pipelines/{pipeline}",
                files={field: (image.name, f)},
                headers=headers,
                timeout=120,
            )
    except httpx.HTTPError as e:
        typer.secho(f"error: could not reach {url}: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    typer.echo(json.dumps(r.json(), indent=2))
    if r.status_code >= 400:
        raise typer.Exit(code=1)


# --- rollouts ------------------------------------------------------------------------------


def _rollout_line(r: dict[str, Any]) -> str:
    spec = r.get("spec", {})
    return (
        f"{r['id']:<28} {spec.get('model', '?'):<9} v{r.get('champion_version')}"
        f"->v{spec.get('challenger_version')}  {r['state']:<12} weight {r.get('weight', 0):>5}"
        f"  failed checks {r.get('failed_checks', 0)}"
        + (f"  ({r['ended_reason']})" if r.get("ended_reason") else "")
    )


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
    r = _api("POST", url, "/v1/rollouts", json=spec)
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
            r = _api("GET", url, f"/v1/rollouts/{rollout_id}")
            typer.echo(_rollout_line(r))
            for e in r.get("events", [])[-8:]:
                typer.echo(
                    f"  {_ts(e.get('ts'))}  {e.get('kind'):<16} "
                    f"{e.get('from_state')}->{e.get('to_state')} weight {e.get('weight')}"
                )
        else:
            rows = _api("GET", url, "/v1/rollouts", params={"active": "true"})["rollouts"]
            typer.echo("\n".join(_rollout_line(r) for r in rows) or "no active rollouts")
        if not watch:
            return
        time.sleep(2)
        typer.echo("")


@rollout_app.command("history")
def rollout_history(url: str = URL_OPTION) -> None:
    """Every rollout, newest first."""
    rows = _api("GET", url, "/v1/rollouts")["rollouts"]
    rows.sort(key=lambda r: r.get("created_at", 0), reverse=True)
    typer.echo("\n".join(_rollout_line(r) for r in rows) or "no rollouts yet")


def _action(action: str, rollout_id: str, url: str) -> None:
    r = _api("POST", url, f"/v1/rollouts/{rollout_id}/{action}")
    typer.echo(_rollout_line(r))


@rollout_app.command("pause")
def rollout_pause(rollout_id: str, url: str = URL_OPTION) -> None:
    """Hold the rollout at its current weight."""
    _action("pause", rollout_id, url)


@rollout_app.command("resume")
def rollout_resume(rollout_id: str, url: str = URL_OPTION) -> None:
    """Continue a paused rollout."""
    _action("resume", rollout_id, url)


@rollout_app.command("promote")
def rollout_promote(rollout_id: str, url: str = URL_OPTION) -> None:
    """Promote the challenger now (moves the champion alias)."""
    _action("promote", rollout_id, url)


@rollout_app.command("abort")
def rollout_abort(rollout_id: str, url: str = URL_OPTION) -> None:
    """Stop the rollout and send all traffic back to the champion."""
    _action("abort", rollout_id, url)


def _ts(value: Any) -> str:
    import datetime as dt

    if not isinstance(value, int | float):
        return "?"
    return dt.datetime.fromtimestamp(value).strftime("%H:%M:%S")


if __name__ == "__main__":  # pragma: no cover
    app()
