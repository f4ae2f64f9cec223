"""Decoding for YOLO-pose ONNX exports that users bring (Ultralytics ``format=onnx``).

The export takes ``images [B, 3, H, W]`` (RGB, 0..1, letterboxed) and returns
``output0 [B, 56, A]``: per anchor column cx, cy, w, h (input pixels), the person score
(already a probability) and 17 COCO keypoints as x, y, confidence. Exporting one needs
ultralytics (and torchvision), which the platform does not ship, so only decoding lives here.
"""

from __future__ import annotations

import numpy as np

from deployments.models.keypoints import COCO17

KEYPOINT_NAMES = COCO17
INPUT_NAME = "images"
OUTPUT_NAME = "output0"
NUM_ROWS = 5 + 3 * len(KEYPOINT_NAMES)  # 56


def decode(
    output: np.ndarray,
    score_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image: ``[56, A]`` -> boxes ``[K, 4]`` x1,y1,x2,y2, scores ``[K]``, kps ``[K, 17, 3]``.

    Coordinates are pixels of the letterboxed model input.
    """
    if output.ndim != 2 or output.shape[0] != NUM_ROWS:
        raise ValueError(f"expected YOLO-pose output [{NUM_ROWS}, anchors], got {output.shape}")
    cols = output.T.astype(np.float64)
    keep = np.flatnonzero(cols[:, 4] >= score_threshold)
    cols = cols[keep]
    xy, wh = cols[:, 0:2], cols[:, 2:4]
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1)
    keypoints = cols[:, 5:].reshape(-1, len(KEYPOINT_NAMES), 3)
    return nms(boxes, cols[:, 4], keypoints, iou_threshold, max_detections)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    keypoints: np.ndarray,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy hard NMS (what Ultralytics does): keep the best box, drop its overlaps."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size and len(kept) < max_detections:
        best = order[0]
        kept.append(int(best))
        rest = order[1:]
        lt = np.maximum(boxes[best, :2], boxes[rest, :2])
        rb = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
        union = _area(boxes[best]) + _area(boxes[rest]) - inter
        overlap = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        order = rest[overlap <= iou_threshold]
    idx = np.array(kept, dtype=np.int64)
    return boxes[idx].reshape(-1, 4), scores[idx], keypoints[idx]


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.prod(np.clip(boxes[..., 2:] - boxes[..., :2], 0, None), axis=-1)
