"""The DAG executor: order, parallel branches, output shape, failure propagation."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from deployments.types import Detection, Keypoint, TextLine
from serving.config import load_config
from serving.pipelines.executor import models_of, run_pipeline
from serving.pipelines.ops import Clip
from tests.unit.serving.pipelines.clip_specs import clip_spec

CFG = load_config()


class Recorder:
    """Stands in for the model deployments at the executor's call boundary."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail = fail

    async def __call__(self, model: str, items: list[Any]) -> list[Any]:
        self.calls.append((model, len(items)))
        if model == self.fail:
            raise RuntimeError("model down")
        if model == "detector":
            return [
                [
                    Detection(
                        box=(10, 10, 50, 90), score=0.9, keypoints=(Keypoint("mid_hip", 30, 70),)
                    ),
                    Detection(box=(0, 0, 5, 5), score=0.2),
                ]
                for _ in items
            ]
        if model == "ocr":
            return [
                [
                    TextLine("RMA 1", 0.95, ((0, 0), (9, 0), (9, 9), (0, 9)), (0, 0, 9, 9)),
                    TextLine("~", 0.1, ((0, 0), (1, 0), (1, 1), (0, 1)), (0, 0, 1, 1)),
                ]
                for _ in items
            ]
        raise AssertionError(model)


class Rendezvous(Recorder):
    """Each model call waits until every other expected call has started: a sequential
    executor never gets there and the call raises instead of hanging the test."""

    def __init__(self, expected: set[str]) -> None:
        super().__init__()
        self.expected = expected
        self.started: set[str] = set()

    async def __call__(self, model: str, items: list[Any]) -> list[Any]:
        self.started.add(model)
        async with asyncio.timeout(10):
            while self.started != self.expected:
                await asyncio.sleep(0)
        return await super().__call__(model, items)


def test_inspect_runs_ocr_in_parallel_with_detection() -> None:
    rec = Rendezvous({"detector", "ocr"})
    image = np.zeros((100, 100, 3), np.uint8)
    out = asyncio.run(run_pipeline(CFG.pipelines["inspect"], image, rec))
    # Both calls were in flight at once (else the rendezvous would have timed out).
    assert {c[0] for c in rec.calls} == {"detector", "ocr"}
    assert [p["score"] for p in out["persons"]] == [0.9]  # min_score 0.25 applied
    assert [t["text"] for t in out["text"]] == ["RMA 1"]  # min_confidence 0.5 applied
    assert out["persons"][0]["keypoints"][0]["name"] == "mid_hip"


def _clip_with(prediction: Any, frames: list[np.ndarray] | None = None) -> dict[str, Any]:
    """The packaged ``clip`` pipeline with the action model answering ``prediction``."""

    async def call(model: str, items: list[Any]) -> list[Any]:
        if model == "action":
            return [prediction] * len(items)
        return await Recorder()(model, items)

    frames = frames or [np.zeros((120, 100, 3), np.uint8)] * 4
    return asyncio.run(run_pipeline(clip_spec(1), Clip(frames=frames, fps=10), call))


def test_clip_sends_frames_one_by_one_tracks_and_raises_alerts() -> None:
    import base64

    import cv2

    from deployments.types import ActionPrediction

    rec = Recorder()
    seen_tracks: list[Any] = []

    async def call(model: str, items: list[Any]) -> list[Any]:
        if model == "action":
            seen_tracks.extend(items)
            return [ActionPrediction("crouching", 0.9, {"crouching": 0.9})] * len(items)
        return await rec(model, items)

    frames = [np.full((120, 100, 3), 40 + i, np.uint8) for i in range(6)]
    out = asyncio.run(run_pipeline(clip_spec(1), Clip(frames=frames, fps=10), call))
    # One item per frame, so the detector deployment can batch them.
    assert rec.calls[0][:2] == ("detector", 6)
    # The 0.2-score box is filtered (min_score 0.25); the steady box is one 6-frame track.
    assert len(seen_tracks) == 1 and len(seen_tracks[0].points) == 6
    assert out["actions"][0]["label"] == "crouching" and out["actions"][0]["outcome"] == "crouching"
    (alert,) = out["alerts"]
    assert alert["action"] == "crouching" and alert["track_id"] == out["tracks"][0]["track_id"]
    assert alert["confidence"] == 0.9 and (alert["route"], alert["reason"]) == (
        "deliver",
        "confident",
    )
    # The snapshot is the whole frame (100x120 is under the size limit) with the box in red.
    jpeg = base64.b64decode(alert["snapshot_jpeg_base64"])
    shot = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), 4)
    assert shot.shape == (120, 100, 3)
    assert alert["box"] == [10.0, 10.0, 50.0, 90.0] == alert["snapshot_box"]
    edge, inside = shot[50, 10].astype(int), shot[50, 30].astype(int)
    assert edge[0] > 200 and edge[1] < 90, edge  # red on the box's left edge
    assert abs(inside - 40).max() < 12, inside  # the frame itself inside the box


def test_packaged_clip_detects_every_third_frame_and_the_last() -> None:
    from deployments.types import ActionPrediction

    rec = Recorder()
    seen_tracks: list[Any] = []

    async def call(model: str, items: list[Any]) -> list[Any]:
        if model == "action":
            seen_tracks.extend(items)
            return [ActionPrediction("crouching", 0.9, {"crouching": 0.9})] * len(items)
        return await rec(model, items)

    frames = [np.full((120, 100, 3), 40 + i, np.uint8) for i in range(8)]
    out = asyncio.run(run_pipeline(CFG.pipelines["clip"], Clip(frames=frames, fps=25), call))
    assert rec.calls[0] == ("detector", 4)  # frames 0, 3, 6 and 7
    # The classifier sees the sampled frames only; the output track has a box on every frame.
    (track,) = seen_tracks
    assert [p.frame_index for p in track.points] == [0, 3, 6, 7]
    assert (out["tracks"][0]["first_frame"], out["tracks"][0]["last_frame"]) == (0, 7)
    assert out["tracks"][0]["length"] == 8
    assert out["alerts"][0]["frame_index"] in (0, 3, 6, 7)


def test_alerts_respect_labels() -> None:
    from deployments.types import ActionPrediction

    out = _clip_with(ActionPrediction("walking", 0.99))
    assert out["actions"][0]["label"] == "walking" and out["alerts"] == []


def test_uncertain_actions_never_alert_and_middling_ones_go_to_review() -> None:
    from deployments.types import ActionPrediction

    low = _clip_with(ActionPrediction("reaching", 0.49))
    assert low["actions"][0]["outcome"] == "uncertain" and low["alerts"] == []
    assert low["actions"][0]["label"] == "reaching"  # what the model said is kept
    mid = _clip_with(ActionPrediction("reaching", 0.5))
    (alert,) = mid["alerts"]
    assert (alert["route"], alert["reason"]) == ("review", "below_review_threshold")
    high = _clip_with(ActionPrediction("reaching", 0.8))
    assert [a["route"] for a in high["alerts"]] == ["deliver"]


def test_a_large_frame_is_downscaled_with_its_box() -> None:
    from deployments.types import ActionPrediction

    frames = [np.zeros((1280, 960, 3), np.uint8)] * 4
    (alert,) = _clip_with(ActionPrediction("crouching", 0.9), frames)["alerts"]
    assert alert["box"] == [10.0, 10.0, 50.0, 90.0]
    assert alert["snapshot_box"] == [5.0, 5.0, 25.0, 45.0]  # max side 640 of 1280


def test_failure_in_one_branch_fails_the_request() -> None:
    with pytest.raises(RuntimeError, match="model down"):
        asyncio.run(
            run_pipeline(
                CFG.pipelines["inspect"], np.zeros((8, 8, 3), np.uint8), Recorder(fail="ocr")
            )
        )


def test_models_of() -> None:
    assert models_of(CFG.pipelines["inspect"]) == ["detector", "ocr"]
    assert models_of(CFG.pipelines["clip"]) == ["detector", "action"]


def test_the_packaged_clip_pipeline_detects_every_frame_of_a_10_fps_clip() -> None:
    rec = Recorder(fail="action")  # the detector's call is all this test looks at
    frames = [np.full((120, 100, 3), 40 + i, np.uint8) for i in range(8)]
    with pytest.raises(RuntimeError):
        asyncio.run(run_pipeline(CFG.pipelines["clip"], Clip(frames=frames, fps=10), rec))
    assert rec.calls[0] == ("detector", 8)  # 10 fps is within max_detect_fps: stride 1
