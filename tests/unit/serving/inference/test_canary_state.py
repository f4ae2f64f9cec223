"""CanaryState (serving/inference/routing.py): routes after a reconcile, rollout records."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import pytest
from skimage import data

from serving.canary import ModelRoute
from serving.config import PlatformConfig
from serving.inference.routing import CanaryState, ChallengerFailed
from tests.unit.serving.conftest import ModelHandle, PhotoInput, canary, ctx, make_plane

Handles = dict[tuple[str, int], ModelHandle]


def _state(config: PlatformConfig) -> CanaryState:
    models = ("detector", "ocr", "action")
    return CanaryState(config, {m: ModelRoute(m, 1) for m in models}, {m: [1] for m in models})


def test_a_reconcile_brings_in_the_running_versions_that_pins_may_reach(
    config: PlatformConfig,
) -> None:
    state = _state(config)
    assert state.last_reconcile is None
    before = time.time()
    state.apply({"detector": {"champion": 1}}, {"detector": [1, 5], "ocr": [1], "action": [1]}, {})
    assert state.last_reconcile is not None and state.last_reconcile >= before
    # v5 runs outside any rollout (a version listed in the config): a pin reaches it.
    d = state.decide(["detector"], {"detector": 5}, None).per_model["detector"]
    assert (d.version, d.arm, d.pinned, d.shadow_version) == (5, "champion", True, None)


def test_rollout_records_carry_the_model_the_time_and_the_latency(
    config: PlatformConfig, handles: Handles
) -> None:
    plane = make_plane(config, handles, canary(weight=100))
    before = time.time()
    outcome = asyncio.run(plane.pipeline(ctx(), "inspect", PhotoInput(data.astronaut())))
    assert outcome.error is None and outcome.versions["detector"] == 2
    (call,) = plane.canary.take_records()
    assert (call.rollout_id, call.model, call.kind, call.arm, call.ok) == (
        "detector-v2-abc",
        "detector",
        "call",
        "challenger",
        True,
    )
    assert call.ts >= before and call.latency_ms is not None and call.latency_ms > 0


def test_records_past_the_bound_drop_the_oldest_and_are_counted(config: PlatformConfig) -> None:
    state = _state(config)
    state.records = deque(maxlen=3)
    route = ModelRoute("detector", 1, 2, 10.0, 0.0, "r1")
    for i in range(5):
        state.record(route, arm="champion", ok=True, latency_ms=float(i))
    assert state.dropped_records == 2
    assert [r.latency_ms for r in state.take_records()] == [2.0, 3.0, 4.0]
    state.record(ModelRoute("detector", 1), arm="champion", ok=True)  # no rollout: not kept
    assert state.take_records() == [] and state.dropped_records == 2


def test_a_failed_challenger_call_is_logged_with_its_request_and_re_run(
    config: PlatformConfig, handles: Handles, caplog: pytest.LogCaptureFixture
) -> None:
    handles[("detector", 2)].fail = RuntimeError("down")
    plane = make_plane(config, handles, canary(weight=100))
    with caplog.at_level(logging.INFO):
        outcome = asyncio.run(plane.pipeline(ctx(), "inspect", PhotoInput(data.astronaut())))
    assert outcome.error is None and outcome.versions["detector"] == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("request rid-1: challenger detector v2 failed") for m in messages)
    assert str(ChallengerFailed("detector", 2)) == "detector v2 failed"
