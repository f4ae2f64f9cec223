"""Cheap per-request features that drift monitoring compares over time.

Input features describe what clients send (light, focus, framing, colour); prediction features
describe what the model answered. Both are flat ``dict[str, float | str]`` rows so they can be
appended to a :class:`drift.windows.Window` and compared column by column. Everything here runs
on the request path, so each function stays in the low milliseconds for a 640x480 frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from deployments.images import reduce_pow2
from deployments.types import ActionPrediction, Detection, TextLine

IMAGE_FEATURES = (
    "brightness",
    "contrast",
    "sharpness",
    "width",
    "height",
    "aspect",
    "colorfulness",
)

# Version of the feature definitions. A frozen reference records the version it was computed
# with; a report never compares rows from different versions (the numbers would not mean the
# same thing). v2: light, focus and colour are measured on a copy whose longer side is at most
# FEATURE_MAX_SIDE pixels (a 512x512 frame: ~4.5 ms -> ~0.6 ms of ingress CPU per request).
# v3: same features; references are built from augmented real photos
# (drift.reference.photos) and judged by the family rule of drift.statistics, so references (and
# cached ones) from v2 are not reused.
# v4: rows may carry an image embedding (``emb_`` columns, drift.embeddings), tested as one
# hypothesis; v3 references have none, so they report ``no_reference`` until rebuilt.
# v5: the copy is made in two steps, an area reduction by a power of two first (what a reduced
# JPEG decode gives; uploads stay encoded up to the capture thread, deployments.images), then
# to FEATURE_MAX_SIDE: a one-step copy's sharpness differed by 15-35 % from the two-step one.
FEATURES_VERSION = 5
FEATURE_MAX_SIDE = 256

# A clip's image features are the mean over at most this many evenly spaced frames: a 10 s clip
# at 30 fps would otherwise cost 300 feature passes for a number that barely moves.
MAX_CLIP_SAMPLES = 8


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"Expected an HxW or HxWx3 image, got shape {image.shape}.")
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"Expected a non-empty image, got shape {image.shape}.")
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk (2003) colourfulness: 0 for a gray image, ~100+ for vivid ones."""
    image = _as_rgb_uint8(rgb).astype(np.float32)
    r, g, b = image[:, :, 0], image[:, :, 1], image[:, :, 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    sigma = float(np.sqrt(rg.var() + yb.var()))
    mu = float(np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))
    return sigma + 0.3 * mu


def _downscaled(image: np.ndarray) -> np.ndarray:
    """``image`` with its longer side cut to ``FEATURE_MAX_SIDE`` (area averaging), or as is."""
    image = reduce_pow2(image)  # what a reduced JPEG decode does (deployments.images)
    height, width = image.shape[:2]
    scale = FEATURE_MAX_SIDE / max(height, width)
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def image_features(rgb: np.ndarray, size: tuple[int, int] | None = None) -> dict[str, float]:
    """Brightness/contrast (mean/std of BT.601 luma, 0..255), sharpness (variance of the
    Laplacian), size, aspect (w/h) and colourfulness of one RGB image.

    Size and aspect are the original's; the rest is measured at ``FEATURE_MAX_SIDE`` so the
    cost does not grow with the upload (sharpness is then "focus at a fixed scale", which is
    what a blurred or out-of-focus camera changes). ``size`` (width, height) is the original's
    when ``rgb`` is a reduced decode of it (``deployments.images``)."""
    original = _as_rgb_uint8(rgb)
    height, width = original.shape[:2]
    if size is not None:
        width, height = size
    image = _downscaled(original)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    mean, std = cv2.meanStdDev(gray)
    laplacian = cv2.Laplacian(gray, cv2.CV_64F)
    return {
        "brightness": float(mean[0, 0]),
        "contrast": float(std[0, 0]),
        "sharpness": float(laplacian.var()),
        "width": float(width),
        "height": float(height),
        "aspect": float(width) / float(height),
        "colorfulness": colorfulness(image),
    }


def clip_features(frames: Sequence[np.ndarray], fps: float) -> dict[str, float]:
    """Mean image features over up to ``MAX_CLIP_SAMPLES`` evenly spaced frames, plus
    ``frame_count`` and ``fps``."""
    if len(frames) == 0:
        raise ValueError("Expected at least one frame, got an empty clip.")
    if fps <= 0:
        raise ValueError(f"fps has value {fps!r}. Expected a positive number.")
    n = len(frames)
    picks = np.unique(np.linspace(0, n - 1, num=min(n, MAX_CLIP_SAMPLES)).round().astype(int))
    per_frame = [image_features(frames[i]) for i in picks]
    row = {name: float(np.mean([f[name] for f in per_frame])) for name in IMAGE_FEATURES}
    row["frame_count"] = float(n)
    row["fps"] = float(fps)
    return row


def _box_area(box: tuple[float, float, float, float], width: float, height: float) -> float:
    x1, y1, x2, y2 = box
    x1, x2 = max(0.0, min(x1, width)), max(0.0, min(x2, width))
    y1, y2 = max(0.0, min(y1, height)), max(0.0, min(y2, height))
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def detection_features(
    detections: Sequence[Detection], image_size: tuple[int, int]
) -> dict[str, float]:
    """``count``, ``mean_confidence``, ``min_confidence`` and ``box_area_share``.

    ``image_size`` is (width, height). Confidences are NaN when nothing was detected (the count
    carries that signal; Evidently drops NaNs per column). ``box_area_share`` sums box areas
    clipped to the image, capped at 1.0: overlaps are counted twice, which is fine for drift.
    """
    width, height = image_size
    if width <= 0 or height <= 0:
        raise ValueError(f"image_size has value {image_size!r}. Expected positive (width, height).")
    scores = [d.score for d in detections]
    area = sum(_box_area(d.box, width, height) for d in detections)
    return {
        "count": float(len(detections)),
        "mean_confidence": float(np.mean(scores)) if scores else float("nan"),
        "min_confidence": float(np.min(scores)) if scores else float("nan"),
        "box_area_share": min(1.0, area / float(width * height)),
    }


def ocr_features(lines: Sequence[TextLine]) -> dict[str, float]:
    """``line_count``, ``text_length`` (characters over all lines) and ``mean_confidence``."""
    return {
        "line_count": float(len(lines)),
        "text_length": float(sum(len(line.text) for line in lines)),
        "mean_confidence": (
            float(np.mean([line.confidence for line in lines])) if lines else float("nan")
        ),
    }


def action_features(
    predictions: ActionPrediction | Sequence[ActionPrediction],
) -> dict[str, float | str]:
    """``label`` (categorical) and ``confidence`` of the most confident prediction, and
    ``prediction_count`` (one prediction per tracked person). No prediction gives label
    ``"none"`` and a NaN confidence."""
    preds = [predictions] if isinstance(predictions, ActionPrediction) else list(predictions)
    if not preds:
        return {"label": "none", "confidence": float("nan"), "prediction_count": 0.0}
    top = max(preds, key=lambda p: p.confidence)
    return {
        "label": top.label,
        "confidence": float(top.confidence),
        "prediction_count": float(len(preds)),
    }
