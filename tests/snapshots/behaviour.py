"""What must not change when the code moves: the CLI's help texts and the metric names.

The HTTP API is snapshotted from the live ``/openapi.json`` (tests/integration). Refresh the
files with ``CANARYSERVE_UPDATE_SNAPSHOTS=1 pytest tests/unit/test_behaviour_snapshot.py
tests/integration/test_openapi_snapshot.py`` only when a change is meant to alter them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
UPDATE = os.environ.get("CANARYSERVE_UPDATE_SNAPSHOTS") == "1"


def cli_help_texts() -> dict[str, str]:
    """``--help`` of every command and group of ``canaryserve``, by command path."""
    import typer
    from typer.testing import CliRunner

    from serving.cli import app

    root = typer.main.get_command(app)
    runner = CliRunner()
    env = {"COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1", "_TYPER_FORCE_DISABLE_TERMINAL": "1"}
    out: dict[str, str] = {}

    def walk(cmd: Any, path: list[str]) -> None:
        result = runner.invoke(app, [*path, "--help"], env=env, terminal_width=100)
        assert result.exit_code == 0, (path, result.output)
        out[" ".join(["canaryserve", *path])] = result.output
        for name in sorted(getattr(cmd, "commands", {})):
            walk(cmd.commands[name], [*path, name])

    walk(root, [])
    return out


def without_empty_examples(doc: Any) -> Any:
    """The OpenAPI document less ``"example": {}`` entries.

    Ray Serve's class-based ingress pickles the FastAPI app, and the unpickled ``Query``
    parameters carry an empty ``example`` that the same app does not produce in-process: it
    documents nothing, so it is not part of the API either way."""
    if isinstance(doc, dict):
        return {
            k: without_empty_examples(v) for k, v in doc.items() if not (k == "example" and v == {})
        }
    if isinstance(doc, list):
        return [without_empty_examples(v) for v in doc]
    return doc


def compare(name: str, actual: Any) -> None:
    """Assert ``actual`` equals the stored snapshot ``name`` (or rewrite it when updating)."""
    path = HERE / name
    text = json.dumps(actual, indent=1, sort_keys=True) + "\n"
    if UPDATE or not path.exists():
        path.write_text(text)
    expected = json.loads(path.read_text())
    assert actual == expected, f"{name} changed; see the diff above (or refresh it on purpose)"
