from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from deployments.types import ActionPrediction, Detection, TextLine, TrackAction
from drift.reference import (
    DEFAULT_ROWS,
    EvalClip,
    build_reference,
    evaluation_images,
    evaluation_inputs,
)
from drift.rows import frame_detection_features, prediction_columns, prediction_row, request_rows

DET = Detection(box=(0.0, 0.0, 32.0, 24.0), score=0.8, label="person")
LINE = TextLine("RETURN 12345", 0.9, ((0, 0), (1, 0), (1, 1), (0, 1)), (0, 0, 1, 1))


def test_prediction_rows_per_output_kind() -> None:
    assert prediction_row("detections", [DET], (64, 48)) == {
        "pred_count": 1.0,
        "pred_mean_confidence": 0.8,
        "pred_min_confidence": 0.8,
        "pred_box_area_share": 0.25,
    }
    assert prediction_row("text", [LINE], (64, 48))["pred_text_length"] == 12.0
    actions = prediction_row(
        "actions", [TrackAction(1, ActionPrediction("walking", 0.7))], (64, 48)
    )
    assert actions["pred_label"] == "walking" and actions["pred_prediction_count"] == 1.0
    with pytest.raises(ValueError, match="no prediction features"):
        prediction_row("alerts", [], (64, 48))


def test_frame_detections_average_per_frame() -> None:
    feats = frame_detection_features([[DET, DET], []], (64, 48))
    assert feats["count"] == 1.0 and feats["box_area_share"] == 0.25
    empty = frame_detection_features([], (64, 48))
    assert empty["count"] == 0.0 and math.isnan(empty["mean_confidence"])


def test_request_rows_share_input_features_and_skip_failed_nodes() -> None:
    image = np.full((48, 64, 3), 200, np.uint8)
    nodes = [("people", "detector", "detections"), ("text", "ocr", "text")]
    rows = request_rows(
        nodes,
        image,
        {"people": [DET]},
        {"detector": 2, "ocr": 1},
        source="live",
        request_id="r1",
        ts=5.0,
    )
    (row,) = rows  # the ocr node produced nothing (not in raw)
    assert row["model"] == "detector" and row["version"] == "2" and row["brightness"] == 200.0
    assert prediction_columns(row) == [
        "pred_count",
        "pred_mean_confidence",
        "pred_min_confidence",
        "pred_box_area_share",
    ]
    clip = EvalClip([image, image], fps=10.0)
    (clip_row,) = request_rows(
        [("act", "action", "actions")],
        clip,
        {"act": []},
        {"action": 1},
        source="shadow",
        request_id="r2",
        ts=5.0,
    )
    assert clip_row["frame_count"] == 2.0 and clip_row["pred_label"] == "none"


def test_evaluation_inputs_are_seeded_and_varied() -> None:
    a, b = evaluation_images(6, seed=0), evaluation_images(6, seed=0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert len({img.shape for img in a}) > 1  # sizes vary
    other = evaluation_images(6, seed=1)
    assert not all(np.array_equal(x, y) for x, y in zip(a, other, strict=True))
    for task in ("detection", "ocr", "action"):
        assert len(evaluation_inputs(task, 4)) == 4
    with pytest.raises(ValueError, match="task has value 'pose'"):
        evaluation_inputs("pose", 2)


def test_build_reference_runs_the_model_on_every_input() -> None:
    seen: list[int] = []

    def predict(images: list[np.ndarray]) -> list[list[Detection]]:
        seen.append(len(images))
        return [[DET] if i % 2 else [] for i in range(len(images))]

    frame = build_reference(predict, "detection", rows=20, batch_size=8)
    assert seen == [8, 8, 4] and len(frame) == 20
    assert isinstance(frame, pd.DataFrame)
    assert set(frame["pred_count"]) == {0.0, 1.0}
    assert DEFAULT_ROWS["detection"] >= 100  # p-values stay meaningful (< ~1000 rows)
