"""Session-wide reference detector models, built once into a temp dir (about a second each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_registry.references.detector import build_detector_v1, build_detector_v2


@pytest.fixture(scope="session")
def detector_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("detector-models")
    return {"v1": build_detector_v1(root / "v1"), "v2": build_detector_v2(root / "v2")}
