"""Real models behind Ray-free handles: the data plane's tests run the real ONNX models.

A :class:`ModelHandle` answers ``predict.remote(item)`` and ``info.remote()`` like a Serve
deployment handle, by calling the real model code in a thread (as a replica does). Only a
failure can be injected (``fail``); results are always the model's own.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from deployments.loader import load_model
from model_registry.references.detector import build_detector_v1, build_detector_v2
from model_registry.references.ocr import build_ocr_v1
from serving.canary import ModelRoute, RolloutRoute
from serving.config import PlatformConfig, load_config
from serving.inference import CanaryState, DataPlane, RequestContext
from serving.pipelines.ops import Clip


class _Method:
    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def remote(self, *args: Any) -> Any:
        return self._fn(*args)


class ModelHandle:
    def __init__(self, model_dir: Path, name: str, version: int) -> None:
        self.model = load_model(model_dir)
        self.model_dir = model_dir
        self.name, self.version = name, version
        self.fail: Exception | None = None
        self.hang = False
        self.items = 0
        self.predict = _Method(self._predict)
        self.info = _Method(self._info)

    async def _predict(self, item: Any) -> Any:
        if self.hang:
            await asyncio.Event().wait()
        if self.fail is not None:
            raise self.fail
        self.items += 1
        (out,) = await asyncio.to_thread(self.model.predict, [item])
        return out

    async def _info(self) -> dict[str, Any]:
        """Some of a replica's ``info()`` (deployments.base): public fields and where it runs."""
        return {
            "model": self.name,
            "version": self.version,
            "task": "detection" if self.name == "detector" else self.name,
            "artifact_dir": str(self.model_dir),
            "pid": os.getpid(),
        }


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], Path]:
    root = tmp_path_factory.mktemp("plane-models")
    return {
        ("detector", 1): build_detector_v1(root / "detector-v1"),
        ("detector", 2): build_detector_v2(root / "detector-v2"),
        ("ocr", 1): build_ocr_v1(root / "ocr-v1"),
    }


@pytest.fixture(scope="session")
def loaded(model_dirs: dict[tuple[str, int], Path]) -> dict[tuple[str, int], ModelHandle]:
    return {key: ModelHandle(path, *key) for key, path in model_dirs.items()}


@pytest.fixture
def handles(loaded: dict[tuple[str, int], ModelHandle]) -> dict[tuple[str, int], ModelHandle]:
    for h in loaded.values():  # fresh failure injection and counts for every test
        h.fail, h.hang, h.items = None, False, 0
    return loaded


@pytest.fixture
def config() -> PlatformConfig:
    return load_config(None)


def make_plane(
    config: PlatformConfig,
    handles: dict[tuple[str, int], ModelHandle],
    rollout: RolloutRoute | None = None,
    capture: Any = None,
) -> DataPlane:
    models = ("detector", "ocr", "action")
    running = {"detector": [1, 2], "ocr": [1], "action": [1]}
    canary = CanaryState(config, {m: ModelRoute(m, 1) for m in models}, running)
    if rollout is not None:
        canary.apply({m: {"champion": 1} for m in models}, running, {"detector": rollout})
    return DataPlane(config, canary, lambda m, v: handles[(m, v)], capture)


class PhotoInput:
    """The request body as a real encoded photo; counts how often it was read."""

    def __init__(self, rgb: np.ndarray) -> None:
        ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        self.data = buf.tobytes()
        self.reads = 0

    async def image(self) -> tuple[np.ndarray, bytes]:
        self.reads += 1
        decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(self.data, np.uint8), 1), 4)
        return decoded, self.data

    async def clip(self) -> tuple[Clip, bytes]:
        raise AssertionError("an image pipeline never asks for a clip")


def ctx(
    pins: str | None = None, key: str | None = "cam-7", *, operator: bool = False
) -> RequestContext:
    """A request's context; ``operator``: the caller may pin a rollout's challenger."""
    return RequestContext("rid-1", "pipeline:inspect", "tester", key, pins, operator)


def canary(weight: float, shadow_share: float = 0.0) -> RolloutRoute:
    return RolloutRoute(
        rollout_id="detector-v2-abc",
        champion=1,
        challenger=2,
        weight=weight,
        shadow_share=shadow_share,
        state="progressing",
    )
