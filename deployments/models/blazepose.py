"""BlazePose person-detector post-processing: SSD anchors, decoding, weighted NMS.

The numbers follow MediaPipe's ``pose_detection`` graph (SsdAnchorsCalculator and
TensorsToDetectionsCalculator options): 5 anchor layers with strides 8/16/32/32/32 and fixed
anchor size, raw box = (x_center, y_center, w, h) scaled by the input size around the anchor
centre, then four keypoints. The box covers the head and upper chest; the full-body region is
the circle around the mid-hip keypoint that passes through the ``full_body`` keypoint.

All functions are plain numpy on one image's outputs; coordinates come back in pixels of the
(square, letterboxed) model input, so the caller maps them to the original image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

KEYPOINT_NAMES = ("mid_hip", "full_body", "mid_shoulder", "upper_body")
STRIDES = (8, 16, 32, 32, 32)
MIN_SCALE, MAX_SCALE = 0.1484375, 0.75  # scales only matter for non-fixed anchor sizes
INPUT_NAME = "input"
OUTPUT_NAMES = ("boxes", "scores")
NUM_COORDS = 4 + 2 * len(KEYPOINT_NAMES)
SCORE_CLIP = 100.0


def ssd_anchors(input_size: int = 224, strides: Sequence[int] = STRIDES) -> np.ndarray:
    """Anchor centres ``[A, 2]`` (x, y) in [0, 1], in the order the model emits its boxes.

    With a fixed anchor size every anchor is 1x1, so only centres matter. Consecutive layers
    with the same stride share one feature map; each layer puts 2 anchors on every cell (aspect
    ratio 1.0 plus the interpolated scale), hence 28²·2 + 14²·2 + 7²·6 = 2254 for 224 pixels.
    """
    centres: list[np.ndarray] = []
    layer = 0
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        per_cell = 2 * (last - layer)
        size = int(np.ceil(input_size / strides[layer]))
        ys, xs = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        cell = np.stack([(xs + 0.5) / size, (ys + 0.5) / size], axis=-1).reshape(-1, 2)
        centres.append(np.repeat(cell, per_cell, axis=0))
        layer = last
    return np.concatenate(centres).astype(np.float32)


def sigmoid_scores(logits: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(logits, dtype=np.float64), -SCORE_CLIP, SCORE_CLIP)
    return 1.0 / (1.0 + np.exp(-clipped))


def decode(
    raw_boxes: np.ndarray,
    raw_scores: np.ndarray,
    anchors: np.ndarray,
    input_size: int = 224,
    score_threshold: float = 0.5,
    iou_threshold: float = 0.3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image: ``[A, 12]`` boxes and ``[A, 1]`` logits -> (boxes, scores, keypoints).

    boxes ``[K, 4]`` x1,y1,x2,y2 and keypoints ``[K, 4, 2]`` are pixels of the model input;
    detections under ``score_threshold`` are dropped and overlapping ones merged by weighted NMS.
    """
    if raw_boxes.shape != (len(anchors), NUM_COORDS) or raw_scores.shape[0] != len(anchors):
        raise ValueError(
            f"expected boxes [{len(anchors)}, {NUM_COORDS}] and scores [{len(anchors)}, 1], "
            f"got {list(raw_boxes.shape)} and {list(raw_scores.shape)}"
        )
    scores = sigmoid_scores(raw_scores.reshape(-1).astype(np.float64))
    keep = np.flatnonzero(scores >= score_threshold)
    raw, centre = raw_boxes[keep].astype(np.float64), anchors[keep] * input_size
    xy, wh = raw[:, 0:2] + centre, raw[:, 2:4]
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1)
    keypoints = raw[:, 4:].reshape(-1, len(KEYPOINT_NAMES), 2) + centre[:, None, :]
    return weighted_nms(boxes, scores[keep], keypoints, iou_threshold)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x1,y1,x2,y2 box against ``[K, 4]`` boxes."""
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(np.clip(box[2:] - box[:2], 0, None))
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, iou_threshold: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's WEIGHTED suppression: each cluster becomes its score-weighted mean.

    The cluster (boxes overlapping the best remaining one by more than ``iou_threshold``) keeps
    the best score; boxes and keypoints are averaged with the scores as weights, which steadies
    the box across frames better than keeping the single best one.
    """
    return _weighted_clusters(
        boxes, scores, keypoints, lambda best, rest: iou(best, rest) > iou_threshold
    )


def merge_views(
    boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, iou_threshold: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted NMS for detections of one image seen through several crops (tiles).

    The BlazePose box has the same size in model pixels whatever the person's size, so one
    person seen in the whole image and in a tile gives concentric boxes of different sizes
    whose IoU can fall under any sensible threshold. Across crops two detections are one
    person when they overlap enough *or* either box contains the other's centre.
    """

    def same(best: np.ndarray, rest: np.ndarray) -> np.ndarray:
        c_best = (best[:2] + best[2:]) / 2
        c_rest = (rest[:, :2] + rest[:, 2:]) / 2
        inside_best = np.all((c_rest >= best[:2]) & (c_rest <= best[2:]), axis=1)
        inside_rest = np.all((c_best >= rest[:, :2]) & (c_best <= rest[:, 2:]), axis=1)
        return (iou(best, rest) > iou_threshold) | inside_best | inside_rest

    return _weighted_clusters(boxes, scores, keypoints, same)


def _weighted_clusters(
    boxes: np.ndarray,
    scores: np.ndarray,
    keypoints: np.ndarray,
    same: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="stable")
    boxes, scores, keypoints = boxes[order], scores[order], keypoints[order]
    out_b, out_s, out_k = [], [], []
    remaining = np.arange(len(scores))
    while remaining.size:
        member = same(boxes[remaining[0]], boxes[remaining])
        member[0] = True  # a degenerate (zero-area) box still forms its own cluster
        cluster = remaining[member]
        w = scores[cluster] / scores[cluster].sum()
        out_b.append((boxes[cluster] * w[:, None]).sum(axis=0))
        out_k.append((keypoints[cluster] * w[:, None, None]).sum(axis=0))
        out_s.append(scores[remaining[0]])
        remaining = remaining[~member]
    n_kp, n_val = keypoints.shape[1:] if keypoints.ndim == 3 else (len(KEYPOINT_NAMES), 2)
    return (
        np.array(out_b, dtype=np.float64).reshape(-1, 4),
        np.array(out_s, dtype=np.float64),
        np.array(out_k, dtype=np.float64).reshape(-1, n_kp, n_val),
    )


def body_box(
    mid_hip: tuple[float, float], full_body: tuple[float, float], width: float, height: float
) -> tuple[float, float, float, float]:
    """Square around ``mid_hip`` with radius |mid_hip - full_body|, clipped to the image."""
    r = float(np.hypot(full_body[0] - mid_hip[0], full_body[1] - mid_hip[1]))
    x, y = mid_hip
    return (
        float(np.clip(x - r, 0, width)),
        float(np.clip(y - r, 0, height)),
        float(np.clip(x + r, 0, width)),
        float(np.clip(y + r, 0, height)),
    )
