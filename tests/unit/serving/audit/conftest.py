"""A real SQLite audit store per test, with an input store beside it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.audit import AuditStore, InputStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    s = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}", inputs=InputStore(tmp_path / "inputs"))
    yield s
    s.close()
