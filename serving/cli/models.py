"""``canaryserve models``: list and register model versions; and the registry every local command
opens, with the bootstrap of the reference models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from serving.cli.api import fail
from serving.cli.audit import audit_admin
from serving.errors import CanaryError

models_app = typer.Typer(help="Registered model versions.", no_args_is_help=True)


def open_registry() -> Any:
    """The configured MLflow model store."""
    from model_registry.mlflow_store import MlflowModelStore

    return MlflowModelStore()


def run_bootstrap(store: Any) -> list[str]:
    """Register the missing reference models behind a progress bar; the names registered."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from model_registry.references.bootstrap import bootstrap, references

    steps = len(references()) * 2
    with Progress(TextColumn("{task.description:<40}"), BarColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("bootstrap", total=steps)

        def progress(msg: str) -> None:
            bar.update(task, description=msg, advance=1 if "already" not in msg else 2)

        done = bootstrap(store, progress=progress)
        bar.update(task, completed=steps, description="bootstrap done")
    return done


@models_app.command("list")
def models_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List registered models, their versions and aliases."""
    try:
        store = open_registry()
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
        fail(e)
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
        store = open_registry()
        info = register_checked(store, model_dir, description=description)
        if alias:
            store.set_alias(info.name, alias, info.version)
    except CanaryError as e:
        audit_admin("model.register", str(model_dir), e.code)
        fail(e)
    audit_admin("model.register", f"{info.name}/{info.version}", source=str(model_dir), alias=alias)
    typer.echo(f"registered {info.name} v{info.version}" + (f" as @{alias}" if alias else ""))
