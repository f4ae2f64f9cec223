"""``canaryserve keys``: API keys (hashed at rest) in the configured key file, and the auth line
``canaryserve serve`` prints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from serving.cli.audit import audit_admin
from serving.cli.config import CONFIG_OPTION, data_dir, read_config

keys_app = typer.Typer(help="API keys (hashed at rest) and their roles.", no_args_is_help=True)


def auth_line(cfg: Any) -> str:
    """How access control is configured, for ``canaryserve serve`` to print at startup."""
    from serving.access import ApiKeyStore, describe

    return describe(cfg.auth, ApiKeyStore.load(cfg.auth.keys_file_in(data_dir()), os.environ))


def _keys_file(config: Path | None) -> Path:
    return Path(read_config(config).auth.keys_file_in(data_dir()))


@keys_app.command("add")
def keys_add(
    name: str,
    role: str = typer.Option(..., help="infer | operator | admin"),
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Create a key; it is printed once and stored only as a hash."""
    from serving.access import add_key

    path = _keys_file(config)
    try:
        key = add_key(path, name, role)
    except ValueError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    audit_admin("keys.add", name, role=role)
    typer.echo(f"{name} ({role}) added to {path}; the key (shown once):\n{key}")


@keys_app.command("list")
def keys_list(config: Path | None = CONFIG_OPTION) -> None:
    from serving.access import list_keys

    for k in list_keys(_keys_file(config)):
        typer.echo(f"{k['id']}  {k['name']:<20} {k['role']:<9} {k.get('created_at', '')}")


@keys_app.command("revoke")
def keys_revoke(name_or_id: str, config: Path | None = CONFIG_OPTION) -> None:
    from serving.access import revoke_key

    if not revoke_key(_keys_file(config), name_or_id):
        typer.secho(f"error: no key {name_or_id!r}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2)
    audit_admin("keys.revoke", name_or_id)
    typer.echo(f"revoked {name_or_id} (ingress replicas apply it on their next request)")
