"""``canaryserve models``: list and register model versions; and the registry every local command
opens, with the bootstrap of the reference models."""

from __future__ import annotations

import json
from collections.abc import Sequence
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


def run_bootstrap(store: Any, licenses: Sequence[str] | None = None) -> list[str]:
    """Register the missing reference models behind a progress bar; the names registered.

    ``licenses``: the weights' licences allowed (the config's ``bootstrap.licenses``)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from model_registry.references.bootstrap import ALL_LICENSES, bootstrap, references

    allowed = tuple(licenses or ALL_LICENSES)
    steps = len(references(allowed)) * 2 + 1  # + evaluating the detectors
    with Progress(TextColumn("{task.description:<40}"), BarColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("bootstrap", total=steps)

        def progress(msg: str) -> None:
            bar.update(task, description=msg, advance=1 if "already" not in msg else 2)

        done = bootstrap(store, progress=progress, licenses=allowed)
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


@models_app.command("evaluate")
def models_evaluate(
    model: str = typer.Argument(..., help="Model name, e.g. detector."),
    version: int | None = typer.Option(None, "--version", min=1, help="Only this version."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Score detection versions on the person-detection set; log the scores to the registry."""
    from model_registry.evaluation.evaluate import evaluate_model

    try:
        results = evaluate_model(open_registry(), model, version)
    except CanaryError as e:
        fail(e)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
        return
    head = f"{'version':>7}  {'recall':>6}  {'prec':>6}  {'small':>6}  {'overlap':>7}  "
    typer.secho(head + f"{'FP no-person':>12}  {'ms/image':>8}  {'loose R/P':>11}", bold=True)
    for r in results:
        m = r.metrics
        typer.echo(
            f"{'v' + str(r.version):>7}  {m['recall']:6.3f}  {m['precision']:6.3f}  "
            f"{m['recall_small']:6.3f}  {m['recall_overlap']:7.3f}  "
            f"{int(m['fp_no_person']):12d}  {m['ms_per_image']:8.1f}  "
            f"{m['recall_loose']:5.3f}/{m['precision_loose']:5.3f}"
        )
    if not results:
        return
    typer.echo("\nper image: found/truth at IoU >= 0.5, false positives, found by the loose rule")
    typer.echo(f"{'image':<26}" + "".join(f"{'v' + str(r.version):>16}" for r in results))
    for k, image in enumerate(results[0].score.images):
        cells = [r.score.images[k] for r in results]
        typer.echo(
            f"{image.name:<26}"
            + "".join(
                f"{f'{len(i.found)}/{i.truth} fp{i.false_positives} ~{i.found_loose}':>16}"
                for i in cells
            )
        )
    runs = ", ".join(f"v{r.version}: {r.run_id}" for r in results)
    typer.echo(f"\nlogged to MLflow experiment 'evaluation' ({runs}); eval.* tags on the versions")
