"""BlazePose anchors and decoding, on hand-built tensors and on the real converted model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data

from deployments.models import blazepose
from deployments.models.detector_model import letterbox


@pytest.fixture(scope="module")
def session(detector_dirs: dict[str, Path]):
    import onnxruntime as ort

    return ort.InferenceSession(
        str(detector_dirs["v1"] / "pose_detection.onnx"), providers=["CPUExecutionProvider"]
    )


def run(session, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    canvas, scale, _, _ = letterbox(image, 224, 224)
    x = (canvas.astype(np.float32) / 127.5 - 1.0)[None]
    boxes, scores = session.run(["boxes", "scores"], {"input": x})
    return boxes[0], scores[0], scale


def test_anchor_count_and_order() -> None:
    anchors = blazepose.ssd_anchors(224)
    assert anchors.shape == (28 * 28 * 2 + 14 * 14 * 2 + 7 * 7 * 6, 2) == (2254, 2)
    # Row-major cells, 2 anchors per cell on the stride-8 and stride-16 maps ...
    np.testing.assert_allclose(anchors[0], [0.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(anchors[1], anchors[0])
    np.testing.assert_allclose(anchors[2], [1.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(anchors[1568], [0.5 / 14, 0.5 / 14])
    # ... and 6 on the shared 7x7 map of the three stride-32 layers.
    np.testing.assert_allclose(anchors[1960:1966], [[0.5 / 7, 0.5 / 7]] * 6)
    np.testing.assert_allclose(anchors[-1], [6.5 / 7, 6.5 / 7])
    assert ((anchors > 0) & (anchors < 1)).all()


def test_decode_offsets_are_relative_to_anchor_centre() -> None:
    anchors = blazepose.ssd_anchors()
    raw = np.zeros((2254, 12), np.float32)
    logits = np.full((2254, 1), -50.0, np.float32)
    i = 583  # cell (x=11, y=10) of the stride-8 map: centre (92, 84) in model pixels
    raw[i] = [2, -4, 40, 20, 0, 100, 0, -50, 10, 10, -5, -5]
    logits[i] = 3.0
    boxes, scores, kps = blazepose.decode(raw, logits, anchors)
    np.testing.assert_allclose(boxes, [[74, 70, 114, 90]])
    np.testing.assert_allclose(scores, [1 / (1 + np.exp(-3.0))])
    np.testing.assert_allclose(kps[0], [[92, 184], [92, 34], [102, 94], [87, 79]])


def test_decode_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match=r"expected boxes \[2254, 12\]"):
        blazepose.decode(np.zeros((100, 12)), np.zeros((100, 1)), blazepose.ssd_anchors())


def test_sigmoid_clips_huge_logits() -> None:
    scores = blazepose.sigmoid_scores(np.array([-1e6, 0.0, 1e6], np.float32))
    np.testing.assert_allclose(scores, [0, 0.5, 1], atol=1e-30)


def test_weighted_nms_averages_a_cluster_and_keeps_the_best_score() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    scores = np.array([0.6, 0.9, 0.7])
    kps = np.stack([np.full((4, 2), v) for v in (0.0, 10.0, 99.0)])
    out_b, out_s, out_k = blazepose.weighted_nms(boxes, scores, kps, 0.3)
    np.testing.assert_allclose(out_s, [0.9, 0.7])
    np.testing.assert_allclose(out_b[0], [0.6, 0.6, 10.6, 10.6])  # (0.9*1 + 0.6*0) / 1.5
    np.testing.assert_allclose(out_k[0], np.full((4, 2), 6.0))
    np.testing.assert_allclose(out_b[1], [50, 50, 60, 60])


def test_merge_views_joins_concentric_boxes_of_different_sizes() -> None:
    # One person seen whole-image (big box) and in a tile (small box): IoU 0.25 < 0.3.
    boxes = np.array([[0, 0, 40, 40], [10, 10, 30, 30], [100, 0, 140, 40]], float)
    scores = np.array([0.6, 0.8, 0.7])
    kps = np.zeros((3, 4, 2))
    assert len(blazepose.weighted_nms(boxes, scores, kps, 0.3)[1]) == 3
    merged_b, merged_s, _ = blazepose.merge_views(boxes, scores, kps, 0.3)
    np.testing.assert_allclose(merged_s, [0.8, 0.7])
    np.testing.assert_allclose(merged_b[0], [40 / 7, 40 / 7, 240 / 7, 240 / 7])


def test_body_box_is_a_clipped_square_around_mid_hip() -> None:
    assert blazepose.body_box((50, 60), (50, 20), 200, 100) == (10, 20, 90, 100)
    assert blazepose.body_box((5, 5), (8, 9), 200, 100) == (0, 0, 10, 10)


def test_real_model_finds_the_astronaut(session) -> None:
    boxes, logits, scale = run(session, skimage.data.astronaut())
    found_b, found_s, found_k = blazepose.decode(boxes, logits, blazepose.ssd_anchors())
    assert len(found_s) == 1 and found_s[0] > 0.7
    x1, y1, x2, y2 = found_b[0] / scale  # astronaut.png is square: no padding
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    # Head / upper chest of the astronaut (face ~x 160-290, y 40-150; collar ~y 250).
    assert 150 < cx < 290 and 100 < cy < 260, (cx, cy)
    mid_hip, full_body, mid_shoulder, _ = found_k[0] / scale
    assert mid_hip[1] > 400  # her hips are at the bottom edge or below
    assert full_body[1] < 80  # the full-body circle passes over the top of her head
    assert 150 < mid_shoulder[1] < 350 and mid_shoulder[1] < mid_hip[1]


@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_real_model_finds_nobody_without_people(session, name: str) -> None:
    boxes, logits, _ = run(session, getattr(skimage.data, name)())
    assert blazepose.sigmoid_scores(logits).max() < 0.3
    _, scores, _ = blazepose.decode(boxes, logits, blazepose.ssd_anchors())
    assert len(scores) == 0
