"""Where the platform keeps its state: the data dir and the MLflow tracking/registry URI.

Default data dir is ``./.canaryserve`` (override with ``CANARYSERVE_DATA_DIR``). Inside it:
``mlflow.db`` (SQLite tracking + registry store), ``mlartifacts/`` (artifact root),
``cache/wheels`` (wheels fetched with ``pip download --no-deps``), ``cache/models`` (converted or
trained reference models) and ``models/`` (verified local copies of registered versions).
``MLFLOW_TRACKING_URI`` wins over the embedded store when set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_DATA_DIR = "CANARYSERVE_DATA_DIR"
ENV_CACHE_DIR = "CANARYSERVE_CACHE_DIR"


def data_dir() -> Path:
    path = Path(os.environ.get(ENV_DATA_DIR, ".canaryserve")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Downloaded wheels and built reference models; shareable between data dirs (tests)."""
    override = os.environ.get(ENV_CACHE_DIR)
    path = Path(override).resolve() if override else data_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def embedded_tracking_uri(base: Path | None = None) -> str:
    return f"sqlite:///{(base or data_dir()) / 'mlflow.db'}"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or embedded_tracking_uri()


def artifact_root(base: Path | None = None) -> Path:
    path = (base or data_dir()) / "mlartifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_models_dir() -> Path:
    path = data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class RegistryRef:
    """Where a process finds the registry and the data dir; handed to every actor and replica
    (they may run on another node, where the environment is not the driver's)."""

    tracking_uri: str
    data_dir: str

    @classmethod
    def from_env(cls) -> RegistryRef:
        return cls(tracking_uri=tracking_uri(), data_dir=str(data_dir()))

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def cache_path(self) -> Path:
        """The cache dir as :func:`cache_dir` resolves it, for this data dir."""
        override = os.environ.get(ENV_CACHE_DIR)
        return Path(override) if override else Path(self.data_dir) / "cache"

    @property
    def models_dir(self) -> Path:
        return Path(self.data_dir) / "models"
