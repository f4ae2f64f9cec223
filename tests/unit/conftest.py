"""Unit tests never start Ray: an autouse fixture makes ``ray.init`` raise.

``yolo_dir`` is the YOLO11n-pose reference detector (the default champion), built once per
session from its cached wheel for every test that runs it.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    def refuse(*_a: object, **_k: object) -> None:
        raise RuntimeError("unit tests must not start Ray; move this test to tests/integration")

    monkeypatch.setattr(ray, "init", refuse)


@pytest.fixture(scope="session")
def yolo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model_registry.references.yolo import detector as v3
    from model_registry.wheels import find_cached_wheel

    if find_cached_wheel(v3.PACKAGE, v3.VERSION) is None:  # tests never download
        pytest.skip(f"{v3.PACKAGE}=={v3.VERSION} is not in the wheel cache (run make install)")
    return v3.build_detector_v3(tmp_path_factory.mktemp("detector-v3") / "v3")
