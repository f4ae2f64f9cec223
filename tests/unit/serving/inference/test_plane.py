"""The data plane on real models and real photos, without Ray."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from skimage import data

from drift.capture import CaptureQueue
from serving.canary import RolloutRecord
from serving.canary.split import key_hash
from serving.config import PlatformConfig
from serving.errors import (
    BadRequest,
    ChallengerPinForbidden,
    InvalidInput,
    RequestTimeout,
    UnknownModel,
    UnknownPipeline,
    VersionNotServed,
)
from serving.inference import audit_record
from tests.unit.serving.conftest import ModelHandle, PhotoInput, canary, ctx, make_plane

Handles = dict[tuple[str, int], ModelHandle]


@pytest.fixture
def astronaut() -> PhotoInput:
    return PhotoInput(data.astronaut())


def test_inspect_finds_the_astronaut_and_reads_text_on_the_champions(
    config: PlatformConfig, handles: Handles, astronaut: PhotoInput
) -> None:
    plane = make_plane(config, handles)
    outcome = asyncio.run(plane.pipeline(ctx(), "inspect", astronaut))
    assert outcome.error is None, outcome.error
    body = outcome.body
    assert body is not None
    assert body["request_id"] == "rid-1"
    assert body["model_versions"] == {"detector": 1, "ocr": 1} == outcome.versions
    assert body["routing"]["detector"]["arm"] == "champion"
    (person,) = [p for p in body["result"]["persons"] if p["score"] >= 0.5][:1]
    x1, y1, x2, y2 = person["box"]
    assert 120 < (x1 + x2) / 2 < 400 and 0 < (y1 + y2) / 2 < 300  # head and shoulders
    assert body["input"]["image"] == {"width": 512, "height": 512}
    assert outcome.input_bytes == astronaut.data
    assert outcome.summary["persons"] == len(body["result"]["persons"])
    assert handles[("detector", 2)].items == 0


def test_a_full_weight_canary_answers_from_the_challenger_and_reports_it(
    config: PlatformConfig, handles: Handles, astronaut: PhotoInput
) -> None:
    plane = make_plane(config, handles, canary(weight=100))
    outcome = asyncio.run(plane.pipeline(ctx(), "inspect", astronaut))
    assert outcome.error is None and outcome.versions == {"detector": 2, "ocr": 1}
    assert outcome.body is not None and outcome.body["routing"]["detector"]["sticky"] is True
    assert handles[("detector", 2)].items == 1 and handles[("detector", 1)].items == 0
    (record,) = plane.canary.take_records()
    assert isinstance(record, RolloutRecord)
    assert (record.rollout_id, record.arm, record.ok) == ("detector-v2-abc", "challenger", True)


def test_a_failing_challenger_is_re_run_on_the_champion(
    config: PlatformConfig, handles: Handles, astronaut: PhotoInput
) -> None:
    handles[("detector", 2)].fail = RuntimeError("CUDA error")
    plane = make_plane(config, handles, canary(weight=100))
    outcome = asyncio.run(plane.pipeline(ctx(), "inspect", astronaut))
    assert outcome.error is None
    assert outcome.versions == {"detector": 1, "ocr": 1}
    assert outcome.body is not None and outcome.body["routing"]["detector"]["fallback"] is True
    assert handles[("detector", 1)].items == 1
    arms = [(r.arm, r.ok) for r in plane.canary.take_records() if r.kind == "call"]
    assert ("challenger", False) in arms and ("champion", True) in arms


def test_a_pinned_challenger_that_fails_is_an_error_not_a_fallback(
    config: PlatformConfig, handles: Handles, astronaut: PhotoInput
) -> None:
    handles[("detector", 2)].fail = RuntimeError("CUDA error")
    plane = make_plane(config, handles, canary(weight=0))
    outcome = asyncio.run(
        plane.pipeline(ctx(pins="detector=2", operator=True), "inspect", astronaut)
    )
    assert outcome.error is not None and getattr(outcome.error, "code", "") == "model_failure"
    assert outcome.versions == {"detector": 2, "ocr": 1}
    assert handles[("detector", 1)].items == 0
    # An operator's probe: served, never rollout evidence, never the breaker's business.
    assert plane.canary.take_records() == []
    assert plane.canary.breakers.get("detector", 2).state == "closed"


def test_unknown_pipeline_model_or_pin_is_refused_before_the_body_is_read(
    config: PlatformConfig, handles: Handles, astronaut: PhotoInput
) -> None:
    plane = make_plane(config, handles)
    cases: list[tuple[Any, type[Exception]]] = [
        (plane.pipeline(ctx(), "nope", astronaut), UnknownPipeline),
        (plane.pipeline(ctx(pins="detector=9"), "inspect", astronaut), VersionNotServed),
        (plane.predict(ctx(), "nope", None, astronaut), UnknownModel),
        (plane.pipeline(ctx(pins="detector"), "inspect", astronaut), InvalidInput),
    ]
    for call, error in cases:
        outcome = asyncio.run(call)
        assert isinstance(outcome.error, error), outcome.error
        assert outcome.body is None and outcome.input_bytes is None
    assert astronaut.reads == 0


def test_predict_runs_one_version_and_refuses_the_action_model(
    config: PlatformConfig, handles: Handles, astronaut: PhotoInput
) -> None:
    plane = make_plane(config, handles)
    outcome = asyncio.run(plane.predict(ctx(), "detector", 2, astronaut))
    assert outcome.error is None and outcome.body is not None
    assert outcome.body["model"] == "detector" and outcome.body["version"] == 2
    detections = outcome.body["result"]["detections"]
    assert detections and outcome.summary == {"detections": len(detections)}
    assert handles[("detector", 2)].items == 1
    refused = asyncio.run(plane.predict(ctx(), "action", None, astronaut))
    assert isinstance(refused.error, InvalidInput) and "clip pipeline" in str(refused.error)


def test_a_model_that_hangs_past_the_timeout_is_a_request_timeout(
    config: PlatformConfig, handles: Handles, astronaut: PhotoInput
) -> None:
    handles[("detector", 1)].hang = True
    fast = config.model_copy(
        update={"ingress": config.ingress.model_copy(update={"request_timeout_s": 0.2})}
    )
    outcome = asyncio.run(make_plane(fast, handles).predict(ctx(), "detector", None, astronaut))
    assert isinstance(outcome.error, RequestTimeout)
    assert outcome.input_bytes == astronaut.data  # what was read is still audited


def test_shadows_mirror_to_the_challenger_and_feed_drift_capture(
    config: PlatformConfig, handles: Handles, astronaut: PhotoInput
) -> None:
    jobs: list[Any] = []
    capture = CaptureQueue(lambda rows: None, flush_interval_s=0.05)
    capture.submit = jobs.append  # type: ignore[method-assign]  # keep the jobs themselves

    async def serve_and_wait() -> Any:
        plane = make_plane(config, handles, canary(weight=0, shadow_share=1.0), capture)
        outcome = await plane.pipeline(ctx(), "inspect", astronaut)
        await asyncio.gather(*plane.shadows._tasks)
        return plane, outcome

    plane, outcome = asyncio.run(serve_and_wait())
    assert outcome.versions == {"detector": 1, "ocr": 1}
    assert outcome.body is not None and outcome.body["routing"]["detector"]["shadowed"] is True
    assert handles[("detector", 2)].items == 1  # the mirror ran on the challenger
    shadows = [r for r in plane.canary.take_records() if r.kind == "shadow"]
    assert len(shadows) == 1 and shadows[0].agreement is not None
    assert sorted((j.source, j.versions["detector"]) for j in jobs) == [("live", 1), ("shadow", 2)]
    assert plane.shadows.in_flight == 0


def test_the_audit_record_shows_the_decision_that_answered(
    config: PlatformConfig, handles: Handles, astronaut: PhotoInput
) -> None:
    handles[("detector", 2)].fail = RuntimeError("down")
    plane = make_plane(config, handles, canary(weight=100))
    request = ctx()
    outcome = asyncio.run(plane.pipeline(request, "inspect", astronaut))
    record = audit_record(request, outcome, 200, None, 12.3)
    node = record.nodes["detector"]
    assert node["version"] == 1 and node["fallback"] is True
    assert node["sticky_key_hash"] is not None and "cam-7" not in str(record)
    assert record.pipeline == "inspect" and record.input_bytes == len(astronaut.data)
    assert record.caller == "tester" and record.status == 200


# --- what the split chose is all a rollout counts ---------------------------------------------


def test_a_challenger_refusing_an_input_the_champion_refuses_too_is_the_callers_4xx(
    config: PlatformConfig, handles: Handles, astronaut: PhotoInput
) -> None:
    for version in (1, 2):
        handles[("detector", version)].fail = BadRequest(f"v{version}: image 0 is 1x1")
    plane = make_plane(config, handles, canary(weight=100))
    outcome = asyncio.run(plane.pipeline(ctx(), "inspect", astronaut))
    # The champions' re-run answered: its refusal is the caller's 4xx.
    assert isinstance(outcome.error, BadRequest) and outcome.error.message == "v1: image 0 is 1x1"
    # The input was at fault: nothing counts against the challenger, its breaker stays closed.
    assert [r for r in plane.canary.take_records() if r.arm == "challenger"] == []
    assert plane.canary.breakers.get("detector", 2).state == "closed"


def test_a_challenger_refusing_an_input_the_champion_takes_is_the_challengers_failure(
    config: PlatformConfig, handles: Handles, astronaut: PhotoInput
) -> None:
    handles[("detector", 2)].fail = BadRequest("image 0 is 1x1")
    plane = make_plane(config, handles, canary(weight=100))
    outcome = asyncio.run(plane.pipeline(ctx(key="cam-9"), "inspect", astronaut))
    assert outcome.error is None and outcome.versions == {"detector": 1, "ocr": 1}
    assert outcome.body is not None and outcome.body["routing"]["detector"]["fallback"] is True
    calls = [(r.arm, r.ok, r.key_hash) for r in plane.canary.take_records() if r.kind == "call"]
    assert ("challenger", False, key_hash("cam-9")) in calls
    assert ("champion", True, key_hash("cam-9")) in calls


def test_pinning_the_challenger_needs_the_operator_role_and_is_refused_before_the_body(
    config: PlatformConfig, handles: Handles, astronaut: PhotoInput
) -> None:
    plane = make_plane(config, handles, canary(weight=50))
    refused = [
        asyncio.run(plane.pipeline(ctx(pins="detector=2"), "inspect", astronaut)),
        asyncio.run(plane.predict(ctx(), "detector", 2, astronaut)),  # ?version= is a pin too
    ]
    for outcome in refused:
        assert isinstance(outcome.error, ChallengerPinForbidden), outcome.error
        assert outcome.error.status_code == 403
        assert outcome.error.code == "challenger_pin_forbidden"
        assert "detector=2" in outcome.error.message
    assert astronaut.reads == 0 and handles[("detector", 2)].items == 0
    # The champion (or any version outside the rollout) may be pinned by any caller ...
    champion = asyncio.run(plane.pipeline(ctx(pins="detector=1"), "inspect", astronaut))
    assert champion.error is None and champion.versions["detector"] == 1
    # ... and an operator may probe the challenger, which is served but never counted.
    probe = asyncio.run(plane.pipeline(ctx(pins="detector=2", operator=True), "inspect", astronaut))
    assert probe.error is None and probe.versions["detector"] == 2
    assert probe.body is not None and probe.body["routing"]["detector"]["pinned"] is True
    assert [r for r in plane.canary.take_records() if r.kind == "call"] == []
