"""Film :mod:`model_registry.references.skeleton_motion` skeletons as a YOLO-pose detector would.

:func:`generate_track` draws a motion, a camera and detector noise (see the motion module's
docstring for the ranges) and returns a :class:`deployments.types.Track` whose detections carry
the 17 COCO keypoints (``Keypoint(name, x, y, score)`` in :data:`COCO17` order) and a full-body
``box`` (``body_box`` None), or no keypoints at all (box-only). :func:`generate_dataset` makes a
balanced, shuffled set. Everything is drawn from the generator passed in: one seed, one set.
"""

from __future__ import annotations

import numpy as np

from deployments.models.keypoints import COCO17
from deployments.types import Detection, Keypoint, Track, TrackPoint
from model_registry.references.skeleton_motion import LABELS, TRAIN, Conditions, J, skeleton

FPS_CHOICES = (5, 8, 10, 12, 15, 20, 24, 25, 30)
_FACE = [J[k] for k in ("nose", "left_eye", "right_eye")]
_LEFT = [J[k] for k in ("left_elbow", "left_wrist", "left_knee", "left_ankle")]
_RIGHT = [J[k] for k in ("right_elbow", "right_wrist", "right_knee", "right_ankle")]
_GROUPS = (
    [J[k] for k in ("left_knee", "right_knee", "left_ankle", "right_ankle")],  # behind a shelf
    [J[k] for k in ("left_elbow", "left_wrist")],
    [J[k] for k in ("right_elbow", "right_wrist")],
    [J[k] for k in COCO17[:5]],
)


def _camera(
    rng: np.random.Generator, world: np.ndarray, cond: Conditions, frame: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``[n, 17, 2]`` of ``world`` seen by a random pinhole camera, and the
    camera's viewing direction."""
    width, height = frame
    hips = world[:, [J["left_hip"], J["right_hip"]]].mean(axis=1)
    mid = hips[len(hips) // 2].copy()
    mid[1] = 1.0
    stature = float(np.ptp(world[0, :, 1])) + 0.1
    path = float(np.max(np.linalg.norm((hips - mid)[:, [0, 2]], axis=1)))
    dist = max(rng.uniform(3.0, 12.0), path + 2.5)
    azimuth = rng.uniform(0, 2 * np.pi)
    pitch = np.radians(rng.uniform(*cond.pitch_deg))
    roll = np.radians(rng.uniform(-cond.roll_deg, cond.roll_deg))
    cp = np.cos(pitch)
    look = np.array([np.sin(azimuth) * cp, -np.sin(pitch), np.cos(azimuth) * cp])
    centre = mid - dist * look
    right = np.cross(look, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(look, right)
    c, s = np.cos(roll), np.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    cam = np.einsum("nkj,ij->nki", world - centre, np.stack([right, down, look]))
    depth = np.maximum(cam[:, :, 2:], 0.3)
    px_height = np.exp(rng.uniform(np.log(40), np.log(max(0.85 * height, 41))))
    focal = px_height * dist / stature
    uv = focal * cam[:, :, :2] / depth
    anchor = np.array([rng.uniform(0.25, 0.75) * width, rng.uniform(0.3, 0.7) * height])
    return uv - uv[len(uv) // 2].mean(axis=0) + anchor, look


def _scores(
    rng: np.random.Generator, world: np.ndarray, look: np.ndarray, cond: Conditions
) -> np.ndarray:
    """Keypoint confidences ``[n, 17]``: the face from behind, the far side, misses, spans."""
    n, k = len(world), cond.noise
    score = rng.uniform(0.55, 0.98, (n, 17))
    left = world[:, J["left_hip"]] - world[:, J["right_hip"]]
    left /= np.linalg.norm(left, axis=1, keepdims=True) + 1e-9
    forward = np.cross(left, [0.0, 1.0, 0.0])
    facing = -forward @ look  # 1: faces the camera, -1: back to it
    away = facing < -0.2
    score[np.ix_(away, _FACE)] *= rng.uniform(0.1, 0.5)
    side_dot = left @ look  # > 0: the left side is the far one
    for idx, far in ((_LEFT, side_dot > 0), (_RIGHT, side_dot <= 0)):
        hidden = far & (np.abs(facing) < 0.5)
        score[np.ix_(hidden, idx)] *= rng.uniform(0.3, 0.9)
    miss = rng.random((n, 17)) < rng.uniform(0, 0.06) * k
    score[miss] = rng.uniform(0.0, 0.29, int(miss.sum()))
    if rng.random() < 0.3 * k:
        group = _GROUPS[rng.integers(len(_GROUPS))]
        a, b = np.sort(rng.integers(0, n + 1, 2))
        if b - a < n // 4:
            a, b = 0, n
        score[a:b, group] = rng.uniform(0.0, 0.25, (b - a, len(group)))
    return np.clip(score, 0.0, 1.0)


def generate_track(
    rng: np.random.Generator,
    label: str,
    *,
    track_id: int = 0,
    with_pose: bool = True,
    conditions: Conditions = TRAIN,
) -> Track:
    """One track of ``label`` as a YOLO-pose detector would report it (pixels, noisy)."""
    cond, k = conditions, conditions.noise
    fps = float(rng.choice(FPS_CHOICES))
    n = int(np.clip(round(rng.uniform(0.8, 4.0) * fps) + 1, 8, 64))
    t = np.arange(n) / fps
    world = skeleton(rng, label, t)
    width = int(rng.uniform(320, 1920))
    height = int(width * rng.uniform(0.5, 0.8))
    uv, look = _camera(rng, world, cond, (width, height))
    size = float(np.median(np.ptp(uv[:, :, 1], axis=1))) + 1.0
    score = _scores(rng, world, look, cond)
    # Jitter (more on occluded points: the detector guesses), the odd glitch frame.
    jitter = rng.uniform(0.004, 0.02) * k * size
    sigma = np.where(score < 0.3, 0.08 * size, jitter)[:, :, None]
    obs = uv + rng.normal(0, 1, uv.shape) * sigma
    if rng.random() < 0.1 * k:
        g = rng.integers(n)
        obs[g] += rng.normal(0, 0.15 * size, (17, 2))
    # Out of frame: clamped to the edge, low confidence.
    out = (uv[:, :, 0] < 0) | (uv[:, :, 0] > width) | (uv[:, :, 1] < 0) | (uv[:, :, 1] > height)
    score[out] = np.minimum(score[out], rng.uniform(0.0, 0.2, int(out.sum())))
    obs[:, :, 0] = np.clip(obs[:, :, 0], 0, width)
    obs[:, :, 1] = np.clip(obs[:, :, 1], 0, height)
    # The box: the body's extent (head top, feet) plus margin and jitter, clipped.
    lo, hi = uv.min(axis=1), uv.max(axis=1)
    margin = np.array([0.05, 0.1, 0.05, 0.04]) * size
    box = np.concatenate([lo, hi], axis=1) + margin * np.array([-1, -1, 1, 1])
    box += rng.normal(0, rng.uniform(0.005, 0.03) * k * size, box.shape)
    box[:, [0, 2]] = np.clip(box[:, [0, 2]], 0, width)
    box[:, [1, 3]] = np.clip(box[:, [1, 3]], 0, height)
    visible = (box[:, 2] - box[:, 0] > 4) & (box[:, 3] - box[:, 1] > 8)
    keep = visible & (rng.random(n) >= rng.uniform(0, 0.12) * k)
    keep[np.flatnonzero(visible)[[0, -1]] if visible.any() else []] = True
    if keep.sum() < 2:  # walked out of the picture: start again (deterministically)
        return generate_track(
            rng, label, track_id=track_id, with_pose=with_pose, conditions=conditions
        )
    no_kp = rng.random(n) < (rng.uniform(0, 0.15) * k if rng.random() < 0.3 else 0.0)
    det_score = rng.uniform(0.5, 0.95, n)
    points = []
    obs_l, score_l, box_l, det_l = obs.tolist(), score.tolist(), box.tolist(), det_score.tolist()
    for i in np.flatnonzero(keep).tolist():
        kps: tuple[Keypoint, ...] = ()
        if with_pose and not no_kp[i]:
            kps = tuple(
                Keypoint(name, xy[0], xy[1], sc)
                for name, xy, sc in zip(COCO17, obs_l[i], score_l[i], strict=True)
            )
        x1, y1, x2, y2 = box_l[i]
        det = Detection(box=(x1, y1, x2, y2), score=det_l[i], keypoints=kps)
        points.append(TrackPoint(i, det))
    return Track(track_id=track_id, points=tuple(points), frame_size=(width, height), fps=fps)


def generate_dataset(
    seed: int,
    per_class: int,
    no_pose_fraction: float = 0.25,
    conditions: Conditions = TRAIN,
) -> tuple[list[Track], np.ndarray]:
    """``per_class`` tracks of every label, shuffled; returns (tracks, label indices)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(LABELS)), per_class)
    rng.shuffle(labels)
    tracks = [
        generate_track(
            rng,
            LABELS[y],
            track_id=i,
            with_pose=rng.random() >= no_pose_fraction,
            conditions=conditions,
        )
        for i, y in enumerate(labels)
    ]
    return tracks, labels


def noisy_labels(
    y: np.ndarray, rate: float, seed: int, num_labels: int = len(LABELS)
) -> np.ndarray:
    """``y`` with a ``rate`` share replaced by a uniformly drawn *other* label (own stream).

    Stands in for what real action labels have and the generator's do not: labellers who
    disagree, and tracks whose person changes action half-way. Without it the synthetic classes
    are separable enough that a calibrated model is 0.9999 sure of the easy tracks.
    """
    rng = np.random.default_rng([seed, 0x1ABE1])
    flip = rng.random(len(y)) < rate
    other = (y + rng.integers(1, num_labels, len(y))) % num_labels
    return np.where(flip, other, y)
