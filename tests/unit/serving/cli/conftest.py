"""The model-registry fixtures (a real SQLite MLflow store per test) for the ``models`` commands."""

from tests.unit.model_registry.conftest import migrated_db, store

__all__ = ["migrated_db", "store"]
