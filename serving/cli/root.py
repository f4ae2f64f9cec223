"""The ``canaryserve`` app: ``bootstrap``, ``serve`` and ``predict``, and the command groups."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import typer

from serving.cli.api import fail
from serving.cli.audit import audit_app
from serving.cli.config import CONFIG_OPTION, read_config
from serving.cli.drift import drift_app
from serving.cli.keys import auth_line, keys_app
from serving.cli.models import models_app, open_registry, run_bootstrap
from serving.cli.rollout import rollout_app
from serving.errors import CanaryError

app = typer.Typer(help="canaryserve: versioned vision models on Ray Serve.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(rollout_app, name="rollout")
app.add_typer(drift_app, name="drift")
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")


@app.command()
def bootstrap(config: Path | None = CONFIG_OPTION) -> None:
    """Register the reference models (detector, ocr, action) if the registry lacks them."""
    from model_registry.settings import tracking_uri

    try:
        licenses = read_config(config).bootstrap.licenses
        store = open_registry()
        done = run_bootstrap(store, licenses)
    except CanaryError as e:
        fail(e)
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
    from serving.cluster.engine import apply_env, front_line, ray_env, reap_stray_haproxy
    from serving.config import load_config

    try:
        overrides: dict[str, Any] = {"server": {}}
        if host:
            overrides["server"]["host"] = host
        if port:
            overrides["server"]["port"] = port
        cfg = load_config(config, overrides)
        store = open_registry()
        if store.is_empty() and not no_bootstrap:
            typer.echo("registry is empty: bootstrapping the reference models")
            run_bootstrap(store, cfg.bootstrap.licenses)
    except CanaryError as e:
        fail(e)

    # Read when ray.init starts the raylet, which hands them to every worker.
    env = apply_env(ray_env(cfg.server))
    reap_stray_haproxy()
    ray.init(
        num_cpus=cfg.server.ray_num_cpus,
        num_gpus=cfg.server.ray_num_gpus,
        include_dashboard=False,
        _metrics_export_port=cfg.server.metrics_export_port,
        logging_level=logging.WARNING,
    )
    stopping = False

    def _shutdown() -> None:
        # The cluster, then any haproxy its manager left behind holding the port.
        rserve.shutdown()
        ray.shutdown()
        reap_stray_haproxy()

    def _stop(*_: Any) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        typer.echo("\nstopping canaryserve ...")
        _shutdown()
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
        typer.echo(f"  HTTP front    {front_line(env)}")
        if env.get("RAY_SERVE_LOG_TO_STDERR") == "0":
            typer.echo("  replica logs  /tmp/ray/session_latest/logs/serve/ (not echoed here)")
        typer.echo("Ctrl-C to stop.")
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        _stop()
    except CanaryError as e:
        _shutdown()
        fail(e)


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


if __name__ == "__main__":  # pragma: no cover
    app()
