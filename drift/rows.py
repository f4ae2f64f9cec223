"""One captured row per (request, model node, version): input features + prediction features.

The same functions build live rows (ingress capture) and reference rows (evaluation at
registration), so a reference and a window always have the same columns. Prediction columns
carry the ``pred_`` prefix, which is how reports tell "what clients sent" from "what the model
answered" (the challenger-vs-champion comparison uses prediction columns only: its inputs are
identical by construction).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from deployments.images import EncodedImage, image_size
from deployments.types import ActionPrediction, Detection, TrackAction
from drift.features import (
    action_features,
    clip_features,
    detection_features,
    image_features,
    ocr_features,
)

PRED_PREFIX = "pred_"
# Output kinds of model ops (serving.pipelines.ops) that have prediction features.
MODEL_OUTPUT_KINDS = ("detections", "frame_detections", "text", "actions")


def input_row(value: Any) -> dict[str, float]:
    """Image features of an RGB array or an encoded image (measured on its small decode, with
    the original's size), or clip features of anything with ``frames`` + ``fps``."""
    if isinstance(value, np.ndarray):
        return image_features(value)
    if isinstance(value, EncodedImage):
        return image_features(value.small(), size=value.size)
    frames, fps = getattr(value, "frames", None), getattr(value, "fps", None)
    if frames is None or fps is None:
        raise TypeError(f"Expected an image array or a clip, got {type(value).__name__}.")
    return clip_features(frames, float(fps))


def input_size(value: Any) -> tuple[int, int]:
    """(width, height) of an image or of a clip's frames."""
    return image_size(value if isinstance(value, np.ndarray | EncodedImage) else value.frames[0])


def frame_detection_features(
    per_frame: Sequence[Sequence[Detection]], image_size: tuple[int, int]
) -> dict[str, float]:
    """Detections over a clip: mean count and box-area share per frame, confidences overall."""
    if not per_frame:
        return {
            "count": 0.0,
            "mean_confidence": float("nan"),
            "min_confidence": float("nan"),
            "box_area_share": 0.0,
        }
    rows = [detection_features(dets, image_size) for dets in per_frame]
    scores = [d.score for dets in per_frame for d in dets]
    return {
        "count": float(np.mean([r["count"] for r in rows])),
        "mean_confidence": float(np.mean(scores)) if scores else float("nan"),
        "min_confidence": float(np.min(scores)) if scores else float("nan"),
        "box_area_share": float(np.mean([r["box_area_share"] for r in rows])),
    }


def prediction_row(kind: str, output: Any, image_size: tuple[int, int]) -> dict[str, float | str]:
    """Prediction features of one node's output, keyed ``pred_<feature>``."""
    feats: dict[str, float | str]
    if kind == "detections":
        feats = dict(detection_features(output, image_size))
    elif kind == "frame_detections":
        feats = dict(frame_detection_features(output, image_size))
    elif kind == "text":
        feats = dict(ocr_features(output))
    elif kind == "actions":
        # classify_tracks yields TrackActions; the model itself yields predictions.
        preds: list[ActionPrediction] = [
            p.prediction if isinstance(p, TrackAction) else p for p in output
        ]
        feats = action_features(preds)
    else:
        raise ValueError(f"Output kind {kind!r} has no prediction features; {MODEL_OUTPUT_KINDS}.")
    return {PRED_PREFIX + k: v for k, v in feats.items()}


def request_rows(
    nodes: Iterable[tuple[str, str, str]],
    value: Any,
    raw: dict[str, Any],
    versions: dict[str, int],
    *,
    source: str,
    request_id: str,
    ts: float,
    embedding: Mapping[str, float] | None = None,
    inputs: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Rows for one request: ``nodes`` are (node name, model, output kind) of model nodes;
    ``raw`` holds each node's output by name. Nodes without output (failed) are skipped.
    ``embedding`` (``emb_`` columns, :mod:`drift.embeddings`) goes into every row when the
    request was one of those embedded. ``inputs``: ``input_row(value)`` when the caller has it
    already (a shadow of a request whose live row was built)."""
    nodes = [n for n in nodes if n[0] in raw and n[1] in versions]
    if not nodes:
        return []
    inputs = input_row(value) if inputs is None else inputs
    size = input_size(value)
    return [
        {
            "model": model,
            "version": str(versions[model]),
            "source": source,
            "request_id": request_id,
            "ts": ts,
            **inputs,
            **(embedding or {}),
            **prediction_row(kind, raw[name], size),
        }
        for name, model, kind in nodes
    ]


def prediction_columns(columns: Iterable[str]) -> list[str]:
    return [c for c in columns if c.startswith(PRED_PREFIX)]
