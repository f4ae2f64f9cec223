"""`canaryserve models register DIR` checks before registering, and `models list` shows it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from model_registry.mlflow_store import MlflowModelStore
from serving.cli import app
from tests.unit.model_registry.test_validate import write_detector_dir

runner = CliRunner()


def test_register_refuses_a_failing_model_and_registers_nothing(
    tmp_path: Path, store: MlflowModelStore
) -> None:
    model_dir = write_detector_dir(tmp_path / "bad", rows=50)  # output rows != 56
    result = runner.invoke(app, ["models", "register", str(model_dir)])
    assert result.exit_code == 2
    assert "model_validation_failed" in result.output
    assert store.is_empty()
    (refused,) = _admin_trail()
    assert (refused["action"], refused["outcome"]) == ("model.register", "model_validation_failed")


def test_register_then_list_with_alias(tmp_path: Path, store: MlflowModelStore) -> None:
    model_dir = write_detector_dir(tmp_path / "good")
    result = runner.invoke(
        app,
        [
            "models",
            "register",
            str(model_dir),
            "--alias",
            "challenger",
            "--description",
            "user YOLO-pose export",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "registered detector v1 as @challenger" in result.output
    listing = runner.invoke(app, ["models", "list"])
    assert "detector  [challenger=v1]" in listing.output
    assert "user YOLO-pose export" in listing.output
    assert store.aliases("detector") == {"challenger": 1}
    (record,) = _admin_trail()  # the registration is in the audit trail, with who did it
    assert (record["action"], record["target"], record["outcome"]) == (
        "model.register",
        "detector/1",
        "ok",
    )
    assert record["actor"].startswith("cli:") and record["detail"]["alias"] == "challenger"


def _admin_trail() -> list[dict[str, Any]]:
    from model_registry.settings import data_dir
    from serving.audit import open_store
    from serving.config import load_config

    store = open_store(load_config(None).audit, data_dir())
    try:
        return store.query_admin(limit=10)
    finally:
        store.close()
