"""Session-wide reference detector models, built once into a temp dir (about a second each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_registry.references.detector import build_detector_v1, build_detector_v2


@pytest.fixture(scope="session")
def detector_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("detector-models")
    return {"v1": build_detector_v1(root / "v1"), "v2": build_detector_v2(root / "v2")}


@pytest.fixture(scope="session")
def yolo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The YOLO11n-pose reference detector (the default champion), built from its wheel."""
    from model_registry.references.yolo import detector as v3
    from model_registry.wheels import find_cached_wheel

    if find_cached_wheel(v3.PACKAGE, v3.VERSION) is None:  # tests never download
        pytest.skip(f"{v3.PACKAGE}=={v3.VERSION} is not in the wheel cache (run make install)")
    return v3.build_detector_v3(tmp_path_factory.mktemp("detector-v3") / "v3")
