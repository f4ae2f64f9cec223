"""The ``--config`` option of the local commands, and the config and data dir they work on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

CONFIG_OPTION = typer.Option(None, "--config", help="Config YAML (default: the packaged one).")


def read_config(path: Path | None) -> Any:
    """The config at ``path`` (the packaged one when ``None``)."""
    from serving.config import load_config

    return load_config(path)


def data_dir() -> Path:
    """Where the registry, the key file and the audit database live."""
    from model_registry.settings import data_dir

    return data_dir()
