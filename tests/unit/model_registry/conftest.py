"""A real SQLite MLflow store per test, in the test's own data dir."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model_registry import settings
from model_registry.mlflow_store import MlflowModelStore


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Creating the MLflow schema takes seconds; do it once and copy the file per test."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowModelStore(tracking_uri=f"sqlite:///{path}").list_models()  # runs the migrations
    return path


@pytest.fixture
def store(tmp_path: Path, migrated_db: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowModelStore:
    """The embedded default store: ``CANARYSERVE_DATA_DIR`` set, no ``MLFLOW_TRACKING_URI``."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(migrated_db, data / "mlflow.db")
    monkeypatch.setenv(settings.ENV_DATA_DIR, str(data))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return MlflowModelStore()
