"""The building blocks a pipeline YAML can name.

Each op declares the *kinds* it consumes and produces (``image``, ``frames``, ``detections`` ...)
so the config can check a DAG before anything is deployed, a typed params model, and, for
model ops, the task of the model it calls. Adding a pipeline needs only YAML; adding an op is
one entry here.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, Field

from deployments.models.keypoints import LayoutName, can_derive, derive
from deployments.types import Track, TrackAction
from serving.pipelines.alerts import UNCERTAIN, Alert, AlertRule, snapshot_with_box
from serving.pipelines.stride import FrameDetections, interpolate_track, sample_indices
from serving.pipelines.tracker import TrackerConfig, track_detections
from serving.schema import Strict

PIPELINE_INPUT_KINDS = ("image", "frames")


@dataclass(frozen=True)
class Clip:
    frames: list[np.ndarray]  # RGB uint8
    fps: float

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.frames[0].shape[:2]
        return (w, h)


class ModelCaller(Protocol):
    """What the executor gives ops: call the version of ``model`` chosen for this request."""

    async def __call__(self, model: str, items: list[Any]) -> list[Any]: ...


class _Params(Strict):
    """Ops that take no params."""


class ScoreParams(_Params):
    min_score: float = Field(default=0.0, ge=0, le=1)


class DetectFramesParams(ScoreParams):
    stride: int = Field(
        default=1,
        ge=1,
        description=(
            "Run the detector on every stride-th frame (0, stride, 2*stride, ...) and the last "
            "one; tracking and actions use those frames, the output tracks are interpolated "
            "in between (see serving/pipelines/stride.py)."
        ),
    )
    max_detect_fps: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Raise the stride so the detector sees at most this many frames per second of "
            "clip: a 25 fps clip with 8 runs at stride 3, a 10 fps clip at stride 1."
        ),
    )

    def stride_for(self, fps: float) -> int:
        if self.max_detect_fps is None:
            return self.stride
        return max(self.stride, math.floor(fps / self.max_detect_fps))


class OcrParams(_Params):
    min_confidence: float = Field(default=0.0, ge=0, le=1)


class ClassifyParams(_Params):
    uncertain_below: float = Field(
        default=0.5, ge=0, le=1, description="Below this confidence the outcome is 'uncertain'."
    )
    derive_keypoints: list[LayoutName] = Field(
        default_factory=list,
        description=(
            "Keypoint layouts to derive from the detector's before classifying (e.g. "
            "blazepose4 from coco17), so an action version that consumes another layout "
            "than the detector reports can be served; see deployments.models.keypoints."
        ),
    )


class AlertParams(_Params):
    labels: list[str] = Field(min_length=1, description="Action labels that raise an alert.")
    review_below: float = Field(
        default=0.8, ge=0, le=1, description="Alerts below this confidence go to human review."
    )
    high_risk: list[str] = Field(
        default_factory=list, description="Labels whose alerts always go to human review."
    )
    snapshot_max_side: int = Field(default=640, ge=16, le=2048)
    jpeg_quality: int = Field(default=85, ge=10, le=100)


RunFn = Callable[[ModelCaller, str | None, list[Any], Any], Awaitable[Any]]


@dataclass(frozen=True)
class Op:
    name: str
    inputs: tuple[str, ...]
    output: str
    task: str | None
    params: type[BaseModel]
    run: RunFn

    def validate_params(self, raw: dict[str, Any]) -> BaseModel:
        return self.params.model_validate(raw)  # ValidationError is a ValueError


# --- op implementations --------------------------------------------------------------------


async def _detect(call: ModelCaller, model: str | None, args: list[Any], p: Any) -> Any:
    (dets,) = await call(model or "", [args[0]])
    return [d for d in dets if d.score >= p.min_score]


async def _detect_frames(call: ModelCaller, model: str | None, args: list[Any], p: Any) -> Any:
    clip: Clip = args[0]
    indices = sample_indices(len(clip.frames), p.stride_for(clip.fps))
    per_frame = await call(model or "", [clip.frames[i] for i in indices])
    return FrameDetections(
        indices,
        tuple([d for d in dets if d.score >= p.min_score] for dets in per_frame),
        len(clip.frames),
    )


async def _ocr(call: ModelCaller, model: str | None, args: list[Any], p: Any) -> Any:
    (lines,) = await call(model or "", [args[0]])
    return [ln for ln in lines if ln.confidence >= p.min_confidence]


async def _persons(call: ModelCaller, model: str | None, args: list[Any], p: Any) -> Any:
    return [d for d in args[0] if d.label == "person" and d.score >= p.min_score]


async def _track(call: ModelCaller, model: str | None, args: list[Any], p: Any) -> Any:
    dets, clip = args
    sampled = dets if isinstance(dets, FrameDetections) else FrameDetections.dense(dets)
    # Tracked on the sampled frames (original indices); output with boxes filled in between.
    tracks = track_detections(
        sampled.detections, frame_size=clip.size, fps=clip.fps, config=p, indices=sampled.indices
    )
    return [interpolate_track(t, sampled.indices) for t in tracks]


async def _classify_tracks(call: ModelCaller, model: str | None, args: list[Any], p: Any) -> Any:
    tracks: list[Track] = args[0]
    if not tracks:
        return []
    # The classifier sees what the detector saw: interpolated points carry no evidence.
    tracks = [t.observed() for t in tracks]
    if p.derive_keypoints:
        tracks = [_with_layouts(t, p.derive_keypoints) for t in tracks]
    preds = await call(model or "", list(tracks))
    return [
        TrackAction(t.track_id, pred, UNCERTAIN if pred.confidence < p.uncertain_below else None)
        for t, pred in zip(tracks, preds, strict=True)
    ]


def _with_layouts(track: Track, targets: list[str]) -> Track:
    """The track with ``targets``' keypoints derived from the COCO ones wherever it has them."""
    points = []
    for tp in track.points:
        det = tp.detection
        for target in targets:
            if can_derive("coco17", target):
                det = derive(det, "coco17", target)
        points.append(replace(tp, detection=det))
    return replace(track, points=tuple(points))


async def _alerts(call: ModelCaller, model: str | None, args: list[Any], p: Any) -> Any:
    actions: list[TrackAction] = args[0]
    tracks, clip = args[1], args[2]
    by_id = {t.track_id: t for t in tracks}
    # Uncertain actions were decided by classify_tracks; this node routes the rest.
    rule = AlertRule(
        labels=p.labels, uncertain_below=0.0, review_below=p.review_below, high_risk=p.high_risk
    )
    alerts = []
    for item in actions:
        pred = item.prediction
        where = None if item.outcome == UNCERTAIN else rule.route(pred.label, pred.confidence)
        if where is None:
            continue
        track = by_id[item.track_id]
        # The snapshot is the track's most confident sighting: the frame a human would pick
        # (a frame the detector saw, never an interpolated box).
        point = max(track.observed().points, key=lambda tp: tp.detection.score)
        box = point.detection.body_box or point.detection.box
        snapshot, shown = await asyncio.to_thread(
            snapshot_with_box, clip.frames[point.frame_index], box,
            p.snapshot_max_side, p.jpeg_quality,
        )  # fmt: skip
        alerts.append(
            Alert(
                track_id=item.track_id,
                action=pred.label,
                confidence=round(pred.confidence, 4),
                route=where[0],
                reason=where[1],
                frame_index=point.frame_index,
                box=tuple(round(v, 1) for v in box),  # type: ignore[arg-type]
                snapshot_jpeg_base64=snapshot,
                snapshot_box=shown,
            )
        )
    return alerts


OPS: dict[str, Op] = {
    op.name: op
    for op in (
        Op("detect", ("image",), "detections", "detection", ScoreParams, _detect),
        Op(
            "detect_frames",
            ("frames",),
            "frame_detections",
            "detection",
            DetectFramesParams,
            _detect_frames,
        ),
        Op("ocr", ("image",), "text", "ocr", OcrParams, _ocr),
        Op("persons", ("detections",), "detections", None, ScoreParams, _persons),
        Op("track", ("frame_detections", "frames"), "tracks", None, TrackerConfig, _track),
        Op("classify_tracks", ("tracks",), "actions", "action", ClassifyParams, _classify_tracks),
        Op("alerts", ("actions", "tracks", "frames"), "alerts", None, AlertParams, _alerts),
    )
}


# --- JSON rendering of each kind -----------------------------------------------------------


def to_json(kind: str, value: Any) -> Any:
    if kind in ("detections", "text"):
        return [_round(v.to_dict()) for v in value]
    if kind == "frame_detections":
        # One entry per frame of the clip; null where the detector did not run (stride > 1).
        per_frame = value.per_frame() if isinstance(value, FrameDetections) else value
        return [None if dets is None else [_round(d.to_dict()) for d in dets] for dets in per_frame]
    if kind == "tracks":
        return [_round(t.to_dict()) for t in value]
    if kind == "actions":
        return [
            {
                "track_id": a.track_id,
                **_round(a.prediction.to_dict()),
                "outcome": a.outcome or a.prediction.label,
            }
            for a in value
        ]
    if kind == "alerts":
        return [a.model_dump(mode="json") for a in value]
    return value


def _round(obj: Any) -> Any:
    if isinstance(obj, float):
        return round(obj, 4)
    if isinstance(obj, dict):
        return {k: _round(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_round(v) for v in obj]
    return obj
