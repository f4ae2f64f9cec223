"""Shadows (serving/inference/shadow.py) over real models: what a mirror records and captures.

The handles are the real reference models (tests/unit/serving/conftest.py); a challenger that
fails or hangs is the real one with a failure injected at its call boundary.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

import numpy as np
import pytest
import yaml
from skimage import data

from drift.capture import CaptureQueue
from serving.canary import ModelRoute
from serving.config import DEFAULT_CONFIG, PlatformConfig, parse_config
from serving.inference.plane import DataPlane
from serving.inference.routing import CanaryState
from serving.inference.shadow import Shadows
from serving.pipelines.executor import model_node_kinds
from tests.unit.serving.conftest import ModelHandle, PhotoInput, canary, ctx, make_plane


@pytest.fixture
def astronaut() -> PhotoInput:
    return PhotoInput(data.astronaut())


def _serve(plane: DataPlane, pipeline: str, photo: PhotoInput, timeout: float = 30) -> Any:
    async def run() -> Any:
        outcome = await plane.pipeline(ctx(), pipeline, photo)
        # Bounded: a shadow that outlives this waited on something it should not have.
        await asyncio.wait_for(asyncio.gather(*plane.shadows._tasks), timeout)
        return outcome

    return asyncio.run(run())


def _shadow_records(plane: DataPlane) -> list[Any]:
    return [r for r in plane.canary.take_records() if r.kind == "shadow"]


def _twin_challenger(handles: dict[tuple[str, int], ModelHandle]) -> dict[Any, ModelHandle]:
    """Detector v2 answered by v1's model: a challenger that agrees with the champion."""
    return {**handles, ("detector", 2): handles[("detector", 1)]}


def test_a_challenger_that_answers_like_the_champion_agrees_fully_over_every_node(
    handles: dict[tuple[str, int], ModelHandle], astronaut: PhotoInput
) -> None:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    twice = copy.deepcopy(raw["pipelines"]["inspect"])
    # Two nodes of the mirrored model: the recorded value is their mean, not their sum.
    twice["nodes"].append({**twice["nodes"][0], "name": "detect_again"})
    twice["output"] = {**twice["output"], "again": "detect_again"}
    raw["pipelines"]["twice"] = twice
    config = parse_config(raw, source="test")
    plane = make_plane(config, _twin_challenger(handles), canary(0, shadow_share=1.0))
    _serve(plane, "twice", astronaut)
    (record,) = _shadow_records(plane)
    assert record.agreement == 1.0 and record.arm is None


def test_without_drift_capture_the_mirror_still_records_its_agreement(
    config: PlatformConfig, handles: dict[tuple[str, int], ModelHandle], astronaut: PhotoInput
) -> None:
    plane = make_plane(config, _twin_challenger(handles), canary(0, shadow_share=1.0), None)
    _serve(plane, "inspect", astronaut)
    assert [r.agreement for r in _shadow_records(plane)] == [1.0]


def test_the_capture_job_of_a_mirror_is_the_challengers_answer_to_the_same_input(
    config: PlatformConfig, handles: dict[tuple[str, int], ModelHandle], astronaut: PhotoInput
) -> None:
    jobs: list[Any] = []
    capture = CaptureQueue(lambda rows: None, flush_interval_s=0.05)
    capture.submit = jobs.append  # type: ignore[method-assign]  # keep the jobs themselves
    plane = make_plane(config, handles, canary(0, shadow_share=1.0), capture)
    _serve(plane, "inspect", astronaut)
    live, shadow = sorted(jobs, key=lambda j: j.source)
    assert (shadow.source, shadow.request_id, shadow.versions) == (
        "shadow",
        "rid-1",
        {"detector": 2, "ocr": 1},
    )
    # Only the mirrored model's nodes are captured as the challenger's; the run is all of it.
    assert shadow.nodes == (("detect", "detector", "detections"),)
    assert live.nodes == (("detect", "detector", "detections"), ("text", "ocr", "text"))
    assert shadow.value is live.value  # the very input the caller sent
    assert set(shadow.raw) == set(live.raw) == {"detect", "persons", "text"}
    assert shadow.raw["detect"] != live.raw["detect"]  # v2's own boxes
    assert isinstance(shadow.ts, float) and shadow.ts >= live.ts - 60


def test_a_failing_mirror_is_a_failed_comparison_only_and_is_logged(
    config: PlatformConfig,
    handles: dict[tuple[str, int], ModelHandle],
    astronaut: PhotoInput,
    caplog: pytest.LogCaptureFixture,
) -> None:
    handles[("detector", 2)].fail = RuntimeError("down")
    plane = make_plane(config, handles, canary(0, shadow_share=1.0))
    with caplog.at_level(logging.INFO):
        outcome = _serve(plane, "inspect", astronaut)
    assert outcome.error is None and outcome.versions == {"detector": 1, "ocr": 1}
    records = plane.canary.take_records()
    # Shadow results feed the agreement checks only: no challenger call is counted, and the
    # breaker (which guards live traffic) does not move ...
    assert [r for r in records if r.kind == "call" and r.arm == "challenger"] == []
    assert plane.canary.breakers.get("detector", 2).state == "closed"
    assert plane.canary.breakers.open_versions() == []
    # ... and the comparison is recorded as failed, not as an agreement.
    assert [r.agreement for r in records if r.kind == "shadow"] == [None]
    messages = [r.getMessage() for r in caplog.records]
    assert "request rid-1: detector v2 failed: RuntimeError('down')" in messages
    assert "shadow of detector v2 failed: ModelFailure('detector v2 failed')" in messages


def test_a_hanging_mirror_is_given_up_after_the_shadow_timeout(
    config: PlatformConfig, handles: dict[tuple[str, int], ModelHandle], astronaut: PhotoInput
) -> None:
    canary_spec = config.canary.model_copy(
        update={"shadow_timeout_s": 0.2, "challenger_timeout_s": 300.0}
    )
    quick = config.model_copy(update={"canary": canary_spec})
    handles[("detector", 2)].hang = True
    plane = make_plane(quick, handles, canary(0, shadow_share=1.0))
    # The challenger's own call budget is 300 s: only the shadow timeout ends the mirror.
    _serve(plane, "inspect", astronaut, timeout=30)
    assert [r.agreement for r in _shadow_records(plane)] == [None]
    assert plane.shadows.in_flight == 0


class _GatedHandle:
    """A deployment handle whose answers (no detections, no text) wait for ``gate``."""

    def __init__(self, gate: asyncio.Event) -> None:
        self.gate = gate
        self.predict = self

    def remote(self, item: Any) -> Any:
        async def answer() -> list[Any]:
            await self.gate.wait()
            return []

        return answer()


def _two_rollouts(config: PlatformConfig, cap: int) -> CanaryState:
    spec = config.canary.model_copy(update={"shadow_max_concurrency": cap})
    routes = {
        "detector": ModelRoute("detector", 1, 2, 0.0, 1.0, "r-det"),
        "ocr": ModelRoute("ocr", 1, 2, 0.0, 1.0, "r-ocr"),
        "action": ModelRoute("action", 1),
    }
    return CanaryState(
        config.model_copy(update={"canary": spec}),
        routes,
        {"detector": [1, 2], "ocr": [1, 2], "action": [1]},
    )


PRIMARY = {"detect": [], "persons": [], "text": []}


def test_mirrors_are_counted_capped_skipped_and_forgotten_once_done(
    config: PlatformConfig,
) -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        canary = _two_rollouts(config, cap=3)
        shadows = Shadows(canary, lambda m, v: _GatedHandle(gate), None)
        spec = config.pipelines["inspect"]
        nodes = model_node_kinds(spec)
        image = np.zeros((64, 64, 3), np.uint8)
        decision = canary.decide(["detector", "ocr"], {}, "cam-1")
        assert decision.shadows() == {"detector": 2, "ocr": 2}
        assert shadows.mirror("rid-1", spec, nodes, image, decision, PRIMARY) == 2
        assert (shadows.in_flight, shadows.skipped) == (2, 0)
        # One slot left: detector's mirror takes it, ocr's is skipped (not the whole request).
        assert shadows.mirror("rid-2", spec, nodes, image, decision, PRIMARY) == 1
        assert (shadows.in_flight, shadows.skipped) == (3, 1)
        assert shadows.mirror("rid-3", spec, nodes, image, decision, PRIMARY) == 0
        assert (shadows.in_flight, shadows.skipped) == (3, 3)
        gate.set()
        await asyncio.wait_for(asyncio.gather(*shadows._tasks), 30)
        await asyncio.sleep(0)  # done-callbacks run on the next loop turn
        assert shadows.in_flight == 0 and shadows._tasks == set()
        agreements = sorted(
            (r.rollout_id, r.agreement) for r in canary.take_records() if r.kind == "shadow"
        )
        assert agreements == [("r-det", 1.0), ("r-det", 1.0), ("r-ocr", 1.0)]

    asyncio.run(scenario())


def test_a_mirror_whose_route_moved_on_is_skipped_and_the_others_still_go(
    config: PlatformConfig,
) -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        gate.set()
        canary = _two_rollouts(config, cap=8)
        shadows = Shadows(canary, lambda m, v: _GatedHandle(gate), None)
        spec = config.pipelines["inspect"]
        decision = canary.decide(["detector", "ocr"], {}, "cam-1")
        # Between the decision and the mirror, a reconcile ended detector's rollout.
        del canary.routes["detector"]
        image = np.zeros((64, 64, 3), np.uint8)
        nodes = model_node_kinds(spec)
        assert shadows.mirror("rid-1", spec, nodes, image, decision, PRIMARY) == 1
        canary.routes["detector"] = ModelRoute("detector", 1, 3, 0.0, 1.0, "r-new")
        assert shadows.mirror("rid-2", spec, nodes, image, decision, PRIMARY) == 1  # not v3
        await asyncio.wait_for(asyncio.gather(*shadows._tasks), 30)
        models = {r.model for r in canary.take_records() if r.kind == "shadow"}
        assert models == {"ocr"}

    asyncio.run(scenario())
