"""Text detection for the OCR model: DB (Differentiable Binarization) pre- and post-processing.

Plain numpy/OpenCV functions so they are unit-testable on hand-built probability maps. The DB
network outputs one text-probability map per image; text regions are the connected blobs above
``thresh``, kept when their mean probability reaches ``box_thresh`` and then grown by the
"unclip" distance (the network is trained on shrunk text kernels).

PaddleOCR grows the polygon with pyclipper and re-fits a minimum-area rectangle. The blobs are
rectangles already (``cv2.minAreaRect``), and the min-area rectangle of a rectangle offset by
``d`` with round joins is that rectangle with each side grown by ``2 * d``; so growing the
rectangle directly gives the same box without pyclipper/shapely.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

Quad = np.ndarray  # float32 (4, 2): top-left, top-right, bottom-right, bottom-left


@dataclass(frozen=True)
class DetInput:
    """One image prepared for the detector, and how to map its boxes back."""

    tensor: np.ndarray  # float32 (3, H, W), H and W multiples of 32
    source_hw: tuple[int, int]  # the original image (boxes are clipped to it)
    padded_hw: tuple[int, int]  # the image after padding, before resizing


def resized_shape(
    h: int, w: int, limit_side_len: int, limit_type: str, max_side_len: int
) -> tuple[int, int]:
    """Detector input size: ``limit_type`` 'max' caps the long side, 'min' lifts the short
    side; ``max_side_len`` caps the long side in both cases; both sides round to 32."""
    if limit_type == "max":
        ratio = min(1.0, limit_side_len / max(h, w))
    else:
        ratio = max(1.0, limit_side_len / min(h, w))
    ratio = min(ratio, max_side_len / max(h, w))
    rh = max(32, round(h * ratio / 32) * 32)
    rw = max(32, round(w * ratio / 32) * 32)
    return rh, rw


def pad_for_detection(img: np.ndarray, min_side: int, max_aspect: float) -> np.ndarray:
    """Pad a thin strip (one cropped line of text) at the bottom/right with its background
    colour: DB finds nothing in a 20-pixel-high strip or a 30:1 one. Padding only at the
    bottom/right keeps the coordinates of the original pixels unchanged."""
    h, w = img.shape[:2]
    new_h = max(h, min_side, math.ceil(w / max_aspect))
    new_w = max(w, min_side, math.ceil(h / max_aspect))
    if (new_h, new_w) == (h, w):
        return img
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    colour = np.median(border, axis=0).astype(img.dtype)
    out = np.empty((new_h, new_w, img.shape[2]), dtype=img.dtype)
    out[:] = colour
    out[:h, :w] = img
    return out


def prepare_det_input(
    img: np.ndarray,
    *,
    limit_side_len: int,
    limit_type: str,
    max_side_len: int,
    min_side: int,
    max_aspect: float,
    mean: np.ndarray,
    std: np.ndarray,
) -> DetInput:
    """``img`` is HxWx3 uint8 in the channel order the model was trained on."""
    padded = pad_for_detection(img, min_side, max_aspect)
    ph, pw = padded.shape[:2]
    rh, rw = resized_shape(ph, pw, limit_side_len, limit_type, max_side_len)
    resized = cv2.resize(padded, (rw, rh))
    norm = (resized.astype(np.float32) * (1.0 / 255.0) - mean) / std
    return DetInput(norm.transpose(2, 0, 1), (img.shape[0], img.shape[1]), (ph, pw))


def group_for_batches(
    shapes: list[tuple[int, int]], max_batch: int, max_waste: float
) -> list[list[int]]:
    """Group detector inputs of different sizes into batches padded to a common size.

    A group accepts an image while (padded area of the group) <= ``max_waste`` x (sum of the
    real areas), so one huge image does not make eight small ones cost eight huge ones.
    """
    order = sorted(range(len(shapes)), key=lambda i: shapes[i][0] * shapes[i][1], reverse=True)
    groups: list[list[int]] = []
    for i in order:
        for group in groups:
            if len(group) >= max_batch:
                continue
            members = [*group, i]
            gh = max(shapes[j][0] for j in members)
            gw = max(shapes[j][1] for j in members)
            real = sum(shapes[j][0] * shapes[j][1] for j in members)
            if gh * gw * len(members) <= max_waste * real:
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def stack_padded(tensors: list[np.ndarray]) -> np.ndarray:
    """Stack (3, h, w) tensors into (N, 3, H, W), zero-padded (zero is the mean colour)."""
    h = max(t.shape[1] for t in tensors)
    w = max(t.shape[2] for t in tensors)
    batch = np.zeros((len(tensors), tensors[0].shape[0], h, w), dtype=np.float32)
    for k, t in enumerate(tensors):
        batch[k, :, : t.shape[1], : t.shape[2]] = t
    return batch


def order_points_clockwise(pts: np.ndarray) -> Quad:
    """Top-left, top-right, bottom-right, bottom-left (image y grows downwards)."""
    pts = np.asarray(pts, dtype=np.float32).reshape(4, 2)
    by_x = pts[np.argsort(pts[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def _mini_box(rect: tuple) -> tuple[Quad, float]:
    return order_points_clockwise(cv2.boxPoints(rect)), float(min(rect[1]))


def _box_score(prob: np.ndarray, quad: Quad) -> float:
    """Mean probability inside the quad (PaddleOCR's 'fast' score)."""
    h, w = prob.shape
    x0 = int(np.clip(np.floor(quad[:, 0].min()), 0, w - 1))
    x1 = int(np.clip(np.ceil(quad[:, 0].max()), 0, w - 1))
    y0 = int(np.clip(np.floor(quad[:, 1].min()), 0, h - 1))
    y1 = int(np.clip(np.ceil(quad[:, 1].max()), 0, h - 1))
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    shifted = (quad - np.array([x0, y0], dtype=np.float32)).astype(np.int32)
    cv2.fillPoly(mask, [shifted.reshape(-1, 1, 2)], 1)
    return float(cv2.mean(prob[y0 : y1 + 1, x0 : x1 + 1], mask)[0])


def unclip_rect(rect: tuple, unclip_ratio: float) -> tuple:
    """Grow a ``cv2.minAreaRect`` by DB's distance ``area * ratio / perimeter`` on each side."""
    (cx, cy), (rw, rh), angle = rect
    perimeter = 2.0 * (rw + rh)
    distance = rw * rh * unclip_ratio / perimeter if perimeter > 0 else 0.0
    return (cx, cy), (rw + 2 * distance, rh + 2 * distance), angle


def db_boxes(
    prob: np.ndarray,
    dest_hw: tuple[int, int],
    *,
    thresh: float,
    box_thresh: float,
    unclip_ratio: float,
    max_candidates: int = 1000,
    min_size: float = 3.0,
    use_dilation: bool = False,
) -> list[tuple[Quad, float]]:
    """Text quads (in ``dest_hw`` pixels, clockwise from top-left) and their scores from one
    (H, W) probability map."""
    map_h, map_w = prob.shape
    dest_h, dest_w = dest_hw
    bitmap: np.ndarray = (prob > thresh).astype(np.uint8)
    if use_dilation:
        bitmap = cv2.dilate(bitmap, np.ones((2, 2), dtype=np.uint8))
    contours, _ = cv2.findContours(bitmap * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    scale = np.array([dest_w / map_w, dest_h / map_h], dtype=np.float32)
    out: list[tuple[Quad, float]] = []
    for contour in contours[:max_candidates]:
        rect = cv2.minAreaRect(contour)
        quad, short_side = _mini_box(rect)
        if short_side < min_size:
            continue
        score = _box_score(prob, quad)
        if score < box_thresh:
            continue
        grown, short_side = _mini_box(unclip_rect(rect, unclip_ratio))
        if short_side < min_size + 2:
            continue
        quad = grown * scale
        quad[:, 0] = np.clip(np.round(quad[:, 0]), 0, dest_w)
        quad[:, 1] = np.clip(np.round(quad[:, 1]), 0, dest_h)
        out.append((quad, score))
    return out


def clip_quad(quad: Quad, h: int, w: int) -> Quad:
    quad = quad.copy()
    quad[:, 0] = np.clip(quad[:, 0], 0, w - 1)
    quad[:, 1] = np.clip(quad[:, 1], 0, h - 1)
    return quad


def reading_order(quads: list[Quad]) -> list[int]:
    """Indices of ``quads`` top-to-bottom, then left-to-right within a row.

    Two boxes share a row when their vertical centres are closer than half the smaller box
    height, which copes with rows that are not perfectly level (a fixed pixel tolerance does
    not scale between a receipt photo and a 4k scan).
    """
    if not quads:
        return []
    top = [float(q[:, 1].min()) for q in quads]
    bottom = [float(q[:, 1].max()) for q in quads]
    rows: list[list[int]] = []
    for i in sorted(range(len(quads)), key=lambda k: (top[k], float(quads[k][:, 0].min()))):
        centre, height = (top[i] + bottom[i]) / 2, bottom[i] - top[i]
        if rows:
            row = rows[-1]
            r_top = min(top[j] for j in row)
            r_bottom = max(bottom[j] for j in row)
            if abs(centre - (r_top + r_bottom) / 2) < 0.5 * min(height, r_bottom - r_top):
                row.append(i)
                continue
        rows.append([i])
    return [i for row in rows for i in sorted(row, key=lambda k: float(quads[k][:, 0].min()))]


def crop_quad(img: np.ndarray, quad: Quad) -> np.ndarray:
    """Perspective-crop a text quad to an upright strip; tall strips are turned to lie flat."""
    width = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    height = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    width, height = max(width, 1), max(height, 1)
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    crop = cv2.warpPerspective(
        img, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    )
    if crop.shape[0] >= 1.5 * crop.shape[1]:
        crop = np.ascontiguousarray(np.rot90(crop))
    return crop
