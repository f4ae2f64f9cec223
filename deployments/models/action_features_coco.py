"""Per-track features from the 17 COCO keypoints (``coco17``) plus box motion (``action`` v2).

Shared by training (``model_registry/references/action_training_v2.py``) and serving
(``deployments/models/action_model.py`` picks this module when the manifest says
``preprocess.keypoint_layout: coco17``); the manifest records :data:`FEATURE_NAMES` and the model
refuses to load under a different list.

Invariances (as in :mod:`deployments.models.action_features`):

* box features are relative to the track's own median and divided by the median box height
  (the *scale*), velocities per second, so resampling to ``seq_len`` does not change them;
* joint features are relative to the hip centre of the same frame and divided by the track's
  median torso length (mid-shoulder to mid-hip, which crouching and reaching barely change),
  *not* minus their median: a person who crouches (or reaches) for the whole track must still
  look crouched, so posture is read from each frame, and its changes from the velocities.

Posture features that separate the classes from a single frame: the higher wrist's height above
its shoulder and the longer arm's extension (reaching), the hip height above the ankles and the
knee bend (crouching), the torso's lean and 2-D length (bending, leaning), the ankle spread
(walking).

A COCO keypoint with a score below :data:`deployments.models.keypoints.MIN_VISIBLE` is missing:
its values are 0 and the visibility features say how much was seen. A frame whose detection
carries no COCO keypoints, or too few visible ones (no hip or no shoulder, or fewer than
:data:`MIN_JOINTS`), has ``has_pose`` 0 and all joint features 0: the box features still work
(the box-only fallback). Nothing is ever NaN; every feature is clipped to ``FEATURE_CLIP``.
"""

from __future__ import annotations

import numpy as np

from deployments.models.keypoints import COCO17, MIN_VISIBLE
from deployments.types import Detection, Track

FEATURE_CLIP = 8.0
MIN_JOINTS = 6  # visible joints needed for a frame to count as having a pose

_J = {name: i for i, name in enumerate(COCO17)}
# Joints whose position relative to the hip centre is a feature.
POS_JOINTS: tuple[str, ...] = (
    "nose",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
# Joints whose velocity relative to the hip centre is a feature.
VEL_JOINTS: tuple[str, ...] = ("nose", "left_wrist", "right_wrist", "left_ankle", "right_ankle")
POSTURE: tuple[str, ...] = (
    "wrist_above_shoulder",  # max over arms of (shoulder y - wrist y) / torso
    "arm_extension",  # max over arms of |wrist - shoulder| / torso
    "hip_above_ankles",  # (mean ankle y - hip y) / torso
    "knee_bend",  # max over legs of 1 - cos(knee angle): 0 straight, 2 folded
    "torso_lean",  # |shoulder x - hip x| / 2-D torso length
    "torso_length",  # 2-D torso length / its track median
    "ankle_spread",  # |left ankle x - right ankle x| / torso
)
BOX_FEATURES: tuple[str, ...] = (
    "body_dx",  # box centre minus track median, / scale
    "body_dy",
    "body_dlog_height",
    "body_dlog_aspect",
    "body_vx",  # per second, scales
    "body_vy",
    "body_vlog_height",
    "has_pose",  # 1 when the frame has a usable COCO pose, else 0 (and all below 0)
)
FEATURE_NAMES: tuple[str, ...] = (
    *BOX_FEATURES,
    "visible_fraction",  # visible joints / 17
    "wrists_visible",  # visible wrists / 2
    "ankles_visible",
    *(f"{j}_{a}" for j in POS_JOINTS for a in ("x", "y")),  # rel. hip centre, / torso
    *POSTURE,
    *(f"{j}_v{a}" for j in VEL_JOINTS for a in ("x", "y")),  # of the above, torso per second
    "hip_above_ankles_v",
)
NUM_FEATURES = len(FEATURE_NAMES)

# Raw per-detection columns (before resampling).
_CX, _CY, _LOG_H, _LOG_ASPECT, _HAS_POSE = range(5)
_POS = _HAS_POSE + 4  # after has_pose and the three visibility columns
_POST = _POS + 2 * len(POS_JOINTS)
_RAW_COLS = _POST + len(POSTURE)


def _box(det: Detection) -> tuple[float, float, float, float]:
    return det.body_box if det.body_box is not None else det.box


def _joints(points: list[Detection]) -> tuple[np.ndarray, np.ndarray]:
    """``xy [n, 17, 2]`` and ``seen [n, 17]`` (score >= MIN_VISIBLE; a missing name is unseen).

    Unseen joints (and any non-finite coordinate) are 0 in ``xy``.
    """
    rows = [
        (i, _J[k.name], k.x, k.y, 1.0 if k.score is None else k.score)
        for i, det in enumerate(points)
        for k in det.keypoints
        if k.name in _J
    ]
    xy = np.zeros((len(points), len(COCO17), 2))
    seen = np.zeros((len(points), len(COCO17)), dtype=bool)
    if rows:
        arr = np.array(rows, dtype=np.float64)
        i, j = arr[:, 0].astype(int), arr[:, 1].astype(int)
        ok = np.isfinite(arr[:, 2:4]).all(axis=1) & (arr[:, 4] >= MIN_VISIBLE)
        xy[i[ok], j[ok]] = arr[ok, 2:4]
        seen[i[ok], j[ok]] = True
    return xy, seen


def _mean_of(xy: np.ndarray, seen: np.ndarray, idx: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame mean ``[n, 2]`` of the seen joints among ``idx``, and whether any was seen."""
    m = seen[:, idx].astype(np.float64)
    count = m.sum(axis=1)
    mean = (xy[:, idx] * m[:, :, None]).sum(axis=1) / np.maximum(count, 1)[:, None]
    return mean, count > 0


def _pose_raw(points: list[Detection]) -> np.ndarray:
    """Columns ``_HAS_POSE:`` of the raw matrix (lengths in torso units); 0 where no pose."""
    n = len(points)
    xy, seen = _joints(points)
    hip, hip_ok = _mean_of(xy, seen, [_J["left_hip"], _J["right_hip"]])
    sho, sho_ok = _mean_of(xy, seen, [_J["left_shoulder"], _J["right_shoulder"]])
    torso = np.hypot(*(sho - hip).T)
    pose = hip_ok & sho_ok & (seen.sum(axis=1) >= MIN_JOINTS) & (torso > 1e-6)
    out = np.zeros((n, _RAW_COLS - _HAS_POSE))
    if not pose.any():
        return out
    scale = float(np.median(torso[pose]))
    rel = (xy - hip[:, None]) / scale * seen[:, :, None]
    out[:, 0] = pose
    out[:, 1] = seen.mean(axis=1)
    out[:, 2] = seen[:, [_J["left_wrist"], _J["right_wrist"]]].mean(axis=1)
    out[:, 3] = seen[:, [_J["left_ankle"], _J["right_ankle"]]].mean(axis=1)
    c = _POS - _HAS_POSE
    out[:, c : c + 2 * len(POS_JOINTS)] = rel[:, [_J[j] for j in POS_JOINTS]].reshape(n, -1)
    post = np.zeros((n, len(POSTURE)))
    ups, exts, bends = [], [], []
    for side in ("left", "right"):
        s, w = _J[f"{side}_shoulder"], _J[f"{side}_wrist"]
        ok = seen[:, s] & seen[:, w]
        ups.append(np.where(ok, rel[:, s, 1] - rel[:, w, 1], -np.inf))
        exts.append(np.where(ok, np.hypot(*(rel[:, w] - rel[:, s]).T), -np.inf))
        h, k, a = (_J[f"{side}_{p}"] for p in ("hip", "knee", "ankle"))
        u, v = xy[:, h] - xy[:, k], xy[:, a] - xy[:, k]
        nu, nv = np.hypot(*u.T), np.hypot(*v.T)
        ok = seen[:, h] & seen[:, k] & seen[:, a] & (nu > 1e-6) & (nv > 1e-6)
        cos = (u * v).sum(axis=1) / np.maximum(nu * nv, 1e-12)
        bends.append(np.where(ok, 1.0 + cos, -np.inf))  # 1 - cos(interior angle)
    for col, vals in ((0, ups), (1, exts), (3, bends)):
        best = np.maximum(*vals)
        post[:, col] = np.where(np.isfinite(best), best, 0.0)
    ankles, ank_ok = _mean_of(rel, seen, [_J["left_ankle"], _J["right_ankle"]])
    post[:, 2] = np.where(ank_ok, ankles[:, 1], 0.0)  # rel is hip-centred: mean ankle y
    post[:, 4] = np.abs(sho[:, 0] - hip[:, 0]) / np.maximum(torso, 1e-6)
    post[:, 5] = torso / scale
    both = seen[:, _J["left_ankle"]] & seen[:, _J["right_ankle"]]
    spread = np.abs(rel[:, _J["left_ankle"], 0] - rel[:, _J["right_ankle"], 0])
    post[:, 6] = np.where(both, spread, 0.0)
    out[:, _POST - _HAS_POSE :] = post
    return out * pose[:, None]


def _raw(points: list[Detection]) -> np.ndarray:
    """Per-detection raw values ``[n, _RAW_COLS]``, all lengths already scaled."""
    boxes = np.array([_box(d) for d in points], dtype=np.float64)
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    scale = float(np.median(h))
    raw = np.zeros((len(points), _RAW_COLS))
    raw[:, _CX] = (boxes[:, 0] + boxes[:, 2]) / 2 / scale
    raw[:, _CY] = (boxes[:, 1] + boxes[:, 3]) / 2 / scale
    raw[:, _LOG_H] = np.log(h / scale)
    raw[:, _LOG_ASPECT] = np.log(w / h)
    raw[:, _HAS_POSE:] = _pose_raw(points)
    return raw


def track_features(track: Track, seq_len: int) -> np.ndarray:
    """Features of one track as a float32 array ``[seq_len, NUM_FEATURES]``.

    Resampled like v1: linear interpolation at ``seq_len`` instants between the first and last
    frame; a one-point track gives constant features with zero velocities.
    """
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}")
    if not track.points:
        raise ValueError(f"track {track.track_id} has no points")
    if not track.fps > 0:
        raise ValueError(f"track {track.track_id} has fps {track.fps!r}; must be > 0")
    by_frame = {p.frame_index: p.detection for p in track.points}
    frames = np.array(sorted(by_frame), dtype=np.float64)
    raw = _raw([by_frame[int(f)] for f in frames])
    times = frames / track.fps
    span = float(times[-1] - times[0])
    if span > 0:
        grid = np.linspace(times[0], times[-1], seq_len)
        res = np.stack([np.interp(grid, times, raw[:, c]) for c in range(_RAW_COLS)], axis=1)
        vel = np.gradient(res, span / (seq_len - 1), axis=0)
    else:
        res = np.repeat(raw[-1:], seq_len, axis=0)
        vel = np.zeros_like(res)
    median = np.median(res, axis=0)
    cols = [
        res[:, _CX] - median[_CX],
        res[:, _CY] - median[_CY],
        res[:, _LOG_H] - median[_LOG_H],
        res[:, _LOG_ASPECT] - median[_LOG_ASPECT],
        vel[:, _CX],
        vel[:, _CY],
        vel[:, _LOG_H],
    ]
    out = np.concatenate(
        [
            np.stack(cols, axis=1),
            res[:, _HAS_POSE : _POST + len(POSTURE)],
            np.stack(
                [vel[:, _POS + 2 * POS_JOINTS.index(j) + a] for j in VEL_JOINTS for a in (0, 1)],
                axis=1,
            ),
            vel[:, _POST + 2 : _POST + 3],
        ],
        axis=1,
    )
    out = np.nan_to_num(out, nan=0.0, posinf=FEATURE_CLIP, neginf=-FEATURE_CLIP)
    return np.clip(out, -FEATURE_CLIP, FEATURE_CLIP).astype(np.float32)


def _mirror_map() -> tuple[np.ndarray, np.ndarray]:
    index = {name: i for i, name in enumerate(FEATURE_NAMES)}
    perm, sign = np.arange(NUM_FEATURES), np.ones(NUM_FEATURES, dtype=np.float32)
    for i, name in enumerate(FEATURE_NAMES):
        other = name.replace("left_", "@").replace("right_", "left_").replace("@", "right_")
        perm[i] = index[other]
        if name.endswith(("_dx", "_x", "_vx")):
            sign[i] = -1.0
    return perm, sign


_MIRROR_PERM, _MIRROR_SIGN = _mirror_map()
# Features that change sign when time runs backwards.
_VELOCITY = np.array([n.endswith(("_vx", "_vy", "_v", "_vlog_height")) for n in FEATURE_NAMES])


def mirrored(x: np.ndarray) -> np.ndarray:
    """Features ``[..., F]`` of the same tracks seen in a mirror (x negated, left <-> right).

    For training-time augmentation: every action looks the same mirrored.
    """
    return x[..., _MIRROR_PERM] * _MIRROR_SIGN


def reversed_in_time(x: np.ndarray) -> np.ndarray:
    """Features ``[N, T, F]`` of the same tracks played backwards (velocities negated)."""
    return np.where(_VELOCITY, -x, x)[:, ::-1].copy()


def batch_features(tracks: list[Track], seq_len: int) -> np.ndarray:
    """``[len(tracks), seq_len, NUM_FEATURES]`` float32; one model input for a whole batch."""
    if not tracks:
        return np.zeros((0, seq_len, NUM_FEATURES), dtype=np.float32)
    return np.stack([track_features(t, seq_len) for t in tracks])
