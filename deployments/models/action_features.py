"""Per-track features for the action classifier, shared by training and serving.

``model_registry/references/action_training.py`` and ``deployments/models/action_model.py``
both call :func:`track_features`, so the numbers a model was trained on are exactly the
numbers it is served; the manifest records :data:`FEATURE_NAMES` and the model refuses to load
under a different list.

Every feature is invariant to where the person is in the frame and how big they are:

* positions are taken relative to the track's own median and divided by the track's median body
  height (the *scale*); sizes are log-ratios to the median;
* keypoints and the head box are taken relative to the body centre of the same frame, then minus
  their median, so a person's static build (and the detector's idiosyncrasies about it) cancels
  out and only posture *changes* remain;
* velocities are per second (frame indices / fps), so resampling a track to ``seq_len`` points
  does not change them.

Two detector shapes are understood. BlazePose (keypoints ``mid_hip``, ``full_body``,
``mid_shoulder``, ``upper_body``; ``body_box`` set): the body is the circle around mid-hip (see
:func:`reference_box`) and ``box`` is the head. Any other detector (e.g. YOLO-pose with the 17
COCO keypoints, ``body_box`` None): the body is ``body_box`` if given, else ``box``; keypoint and
head features are zero and ``has_pose`` is 0.
"""

from __future__ import annotations

import numpy as np

from deployments.types import Detection, Track

POSE_KEYPOINTS: tuple[str, ...] = ("mid_hip", "full_body", "mid_shoulder", "upper_body")
# mid_hip is the body centre itself, so only the other three are features.
_REL_KEYPOINTS: tuple[str, ...] = ("full_body", "mid_shoulder", "upper_body")
# Keypoints whose velocity relative to the body is a feature (they move when a person reaches).
_MOVING_KEYPOINTS: tuple[str, ...] = ("mid_shoulder", "upper_body")

FEATURE_NAMES: tuple[str, ...] = (
    "body_dx",  # body centre minus track median, / scale
    "body_dy",
    "body_dlog_height",  # log(height / median height)
    "body_dlog_aspect",  # log(width / height) minus its median
    "body_vx",  # body centre velocity, scales per second
    "body_vy",
    "body_vlog_height",  # d log(height) / dt
    "has_pose",  # 1 when the four BlazePose keypoints are present, else 0 (and 0 below)
    *(f"{k}_{a}" for k in _REL_KEYPOINTS for a in ("dx", "dy")),  # rel. body centre, minus median
    "head_dx",  # head box centre rel. body centre, minus median (BlazePose only)
    "head_dy",
    "head_dlog_size",
    *(f"{k}_{a}" for k in _MOVING_KEYPOINTS for a in ("vx", "vy")),  # rel. body centre, per s
)
NUM_FEATURES = len(FEATURE_NAMES)
# Bound on any feature: a wrong fps or a one-frame detector glitch must not produce values the
# model never saw in training (ReLU networks extrapolate linearly, i.e. badly).
FEATURE_CLIP = 8.0

# Columns of the raw per-detection matrix built by _raw().
_CX, _CY, _LOG_H, _LOG_ASPECT, _HAS_POSE = 0, 1, 2, 3, 4
_KP = 5  # (x, y) of each _REL_KEYPOINTS, relative to the body centre, / scale
_HEAD = _KP + 2 * len(_REL_KEYPOINTS)  # 3 columns: head dx, dy, log size ratio
_RAW_COLS = _HEAD + 3


def _pose(det: Detection) -> dict[str, tuple[float, float]] | None:
    found = {k.name: (k.x, k.y) for k in det.keypoints if k.name in POSE_KEYPOINTS}
    return found if len(found) == len(POSE_KEYPOINTS) else None


def reference_box(det: Detection) -> tuple[float, float, float, float]:
    """The box that stands for the whole body.

    With the BlazePose keypoints this is the square around ``mid_hip`` through ``full_body``,
    i.e. ``body_box`` *before* the detector clips it to the image: a person half out of frame
    (or a close-up whose body circle exceeds the image) would otherwise seem to shrink and shift
    as they move, which looks like crouching or reaching. Else ``body_box``, else ``box``.
    """
    pose = _pose(det)
    if pose is not None:
        (hx, hy), (fx, fy) = pose["mid_hip"], pose["full_body"]
        r = float(np.hypot(fx - hx, fy - hy))
        if r > 0:
            return (hx - r, hy - r, hx + r, hy + r)
    return det.body_box if det.body_box is not None else det.box


def _raw(points: list[Detection]) -> np.ndarray:
    """Per-detection raw values ``[n, _RAW_COLS]``; lengths divided by the median height."""
    boxes = np.array([reference_box(d) for d in points], dtype=np.float64)
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    scale = float(np.median(h))
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2

    raw = np.zeros((len(points), _RAW_COLS), dtype=np.float64)
    raw[:, _CX] = cx / scale
    raw[:, _CY] = cy / scale
    raw[:, _LOG_H] = np.log(h / scale)
    raw[:, _LOG_ASPECT] = np.log(w / h)
    for i, det in enumerate(points):
        pose = _pose(det)
        if pose is None:
            continue
        raw[i, _HAS_POSE] = 1.0
        for j, name in enumerate(_REL_KEYPOINTS):
            x, y = pose[name]
            raw[i, _KP + 2 * j] = (x - cx[i]) / scale
            raw[i, _KP + 2 * j + 1] = (y - cy[i]) / scale
        x1, y1, x2, y2 = det.box  # BlazePose: the head / upper chest
        raw[i, _HEAD] = ((x1 + x2) / 2 - cx[i]) / scale
        raw[i, _HEAD + 1] = ((y1 + y2) / 2 - cy[i]) / scale
        head_size = np.sqrt(max(x2 - x1, 1e-6) * max(y2 - y1, 1e-6))
        raw[i, _HEAD + 2] = np.log(head_size / h[i])
    return raw


def track_features(track: Track, seq_len: int) -> np.ndarray:
    """Features of one track as a float32 array ``[seq_len, NUM_FEATURES]``.

    The track is resampled by linear interpolation at ``seq_len`` evenly spaced instants between
    its first and last frame, so tracks of any length (and with missed frames) map to the same
    shape. A one-point track gives constant features with zero velocities.
    """
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}")
    if not track.points:
        raise ValueError(f"track {track.track_id} has no points")
    if not track.fps > 0:
        raise ValueError(f"track {track.track_id} has fps {track.fps!r}; must be > 0")
    # Sort by frame and keep one detection per frame (the last one reported for it).
    by_frame = {p.frame_index: p.detection for p in track.points}
    frames = np.array(sorted(by_frame), dtype=np.float64)
    raw = _raw([by_frame[int(f)] for f in frames])
    times = frames / track.fps

    span = float(times[-1] - times[0])
    grid = np.linspace(times[0], times[-1], seq_len)
    if span > 0:
        res = np.stack([np.interp(grid, times, raw[:, c]) for c in range(_RAW_COLS)], axis=1)
    else:
        res = np.repeat(raw[-1:], seq_len, axis=0)
    median = np.median(res, axis=0)  # over time, not over detections: gaps do not bias it
    if span > 0:
        vel = np.gradient(res, span / (seq_len - 1), axis=0)
    else:
        vel = np.zeros_like(res)

    cols = [
        res[:, _CX] - median[_CX],
        res[:, _CY] - median[_CY],
        res[:, _LOG_H] - median[_LOG_H],
        res[:, _LOG_ASPECT] - median[_LOG_ASPECT],
        vel[:, _CX],
        vel[:, _CY],
        vel[:, _LOG_H],
        res[:, _HAS_POSE],
    ]
    for c in range(_KP, _HEAD + 3):
        cols.append(res[:, c] - median[c])
    for name in _MOVING_KEYPOINTS:
        j = _REL_KEYPOINTS.index(name)
        cols.append(vel[:, _KP + 2 * j])
        cols.append(vel[:, _KP + 2 * j + 1])
    out = np.stack(cols, axis=1)
    return np.clip(out, -FEATURE_CLIP, FEATURE_CLIP).astype(np.float32)


def batch_features(tracks: list[Track], seq_len: int) -> np.ndarray:
    """``[len(tracks), seq_len, NUM_FEATURES]`` float32; one model input for a whole batch."""
    if not tracks:
        return np.zeros((0, seq_len, NUM_FEATURES), dtype=np.float32)
    return np.stack([track_features(t, seq_len) for t in tracks])
