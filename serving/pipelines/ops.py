"""The building blocks a pipeline YAML can name.

Each op declares the *kinds* it consumes and produces (``image``, ``frames``, ``detections`` ...)
so the config can check a DAG before anything is deployed, a typed params model, and, for
model ops, the task of the model it calls. Adding a pipeline needs only YAML; adding an op is
one entry here.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, Field

from deployments.types import Track
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


class OcrParams(_Params):
    min_confidence: float = Field(default=0.0, ge=0, le=1)


class AlertParams(_Params):
    labels: list[str] = Field(min_length=1, description="Action labels that raise an alert.")
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    snapshot_max_side: int = Field(default=256, ge=16, le=2048)
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
    per_frame = await call(model or "", list(clip.frames))
    return [[d for d in dets if d.score >= p.min_score] for dets in per_frame]


async def _ocr(call: ModelCaller, model: str | None, args: list[Any], p: Any) -> Any:
    (lines,) = await call(model or "", [args[0]])
    return [ln for ln in lines if ln.confidence >= p.min_confidence]


async def _persons(call: ModelCaller, model: str | None, args: list[Any], p: Any) -> Any:
    return [d for d in args[0] if d.label == "person" and d.score >= p.min_score]


async def _track(call: ModelCaller, model: str | None, args: list[Any], p: Any) -> Any:
    per_frame, clip = args
    return track_detections(per_frame, frame_size=clip.size, fps=clip.fps, config=p)


async def _classify_tracks(call: ModelCaller, model: str | None, args: list[Any], p: Any) -> Any:
    tracks: list[Track] = args[0]
    if not tracks:
        return []
    preds = await call(model or "", list(tracks))
    return [(t.track_id, pred) for t, pred in zip(tracks, preds, strict=True)]


async def _alerts(call: ModelCaller, model: str | None, args: list[Any], p: Any) -> Any:
    actions, tracks, clip = args
    by_id = {t.track_id: t for t in tracks}
    wanted = set(p.labels)
    alerts = []
    for track_id, pred in actions:
        if pred.label not in wanted or pred.confidence < p.min_confidence:
            continue
        track = by_id[track_id]
        # The snapshot is the track's most confident sighting: the frame a human would pick.
        point = max(track.points, key=lambda tp: tp.detection.score)
        det = point.detection
        snapshot = await asyncio.to_thread(
            snapshot_jpeg,
            clip.frames[point.frame_index],
            det.body_box or det.box,
            p.snapshot_max_side,
            p.jpeg_quality,
        )
        alerts.append(
            {
                "track_id": track_id,
                "action": pred.label,
                "confidence": round(pred.confidence, 4),
                "frame_index": point.frame_index,
                "box": [round(v, 1) for v in (det.body_box or det.box)],
                "snapshot_jpeg_base64": snapshot,
            }
        )
    return alerts


def snapshot_jpeg(
    frame: np.ndarray, box: tuple[float, float, float, float], max_side: int, quality: int
) -> str:
    import cv2

    h, w = frame.shape[:2]
    x1, y1, x2, y2 = box
    x1, y1 = max(0, int(x1)), max(0, int(y1))
    x2, y2 = min(w, int(np.ceil(x2))), min(h, int(np.ceil(y2)))
    crop = frame[y1:y2, x1:x2] if x2 > x1 and y2 > y1 else frame
    scale = max_side / max(crop.shape[:2])
    if scale < 1:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:  # pragma: no cover - imencode of a uint8 crop does not fail
        raise RuntimeError("JPEG encoding failed")
    return base64.b64encode(buf.tobytes()).decode("ascii")


OPS: dict[str, Op] = {
    op.name: op
    for op in (
        Op("detect", ("image",), "detections", "detection", ScoreParams, _detect),
        Op(
            "detect_frames",
            ("frames",),
            "frame_detections",
            "detection",
            ScoreParams,
            _detect_frames,
        ),
        Op("ocr", ("image",), "text", "ocr", OcrParams, _ocr),
        Op("persons", ("detections",), "detections", None, ScoreParams, _persons),
        Op("track", ("frame_detections", "frames"), "tracks", None, TrackerConfig, _track),
        Op("classify_tracks", ("tracks",), "actions", "action", _Params, _classify_tracks),
        Op("alerts", ("actions", "tracks", "frames"), "alerts", None, AlertParams, _alerts),
    )
}


# --- JSON rendering of each kind -----------------------------------------------------------


def to_json(kind: str, value: Any) -> Any:
    if kind in ("detections", "text"):
        return [_round(v.to_dict()) for v in value]
    if kind == "frame_detections":
        return [[_round(d.to_dict()) for d in dets] for dets in value]
    if kind == "tracks":
        return [_round(t.to_dict()) for t in value]
    if kind == "actions":
        return [{"track_id": tid, **_round(pred.to_dict())} for tid, pred in value]
    return value


def _round(obj: Any) -> Any:
    if isinstance(obj, float):
        return round(obj, 4)
    if isinstance(obj, dict):
        return {k: _round(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_round(v) for v in obj]
    return obj
