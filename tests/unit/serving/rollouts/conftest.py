"""The rollout manager's tests use the real SQLite MLflow store of the registry's tests."""

from __future__ import annotations

from tests.unit.model_registry.conftest import migrated_db, store

__all__ = ["migrated_db", "store"]
