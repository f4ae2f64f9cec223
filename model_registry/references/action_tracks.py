"""Synthetic person tracks for the action classifier (``action`` v1) and its tests.

No labelled action clips ship with any package we can install, so the training data is
generated: tracks of detections *as the BlazePose person detector reports them* (head box,
full-body ``body_box`` around mid-hip, four keypoints), plus a share in the YOLO-pose shape
(full-body box only), with random frame size, person size, position, direction, fps, track
length, detector jitter, size jitter and missed frames. The four classes differ by how the body
moves, not by how it looks:

* ``walking``: the body translates (0.12-4 body heights/s, mostly sideways) with a slight bob;
* ``standing``: no translation, slow sway and detector jitter only;
* ``reaching``: hips stay; the shoulder point, the upper-body circle point and the head shift
  sideways/up and the upper-body circle grows (an arm extends);
* ``crouching``: the hip goes down while the body circle shrinks (feet stay put), the torso leans.

Everything is drawn from the ``np.random.Generator`` passed in: one seed, one data set.
"""

from __future__ import annotations

import math

import numpy as np

from deployments.types import Detection, Keypoint, Track, TrackPoint

LABELS: tuple[str, ...] = ("walking", "standing", "reaching", "crouching")


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _motion_profile(
    rng: np.random.Generator, t: np.ndarray, typical_s: tuple[float, float]
) -> np.ndarray:
    """0 -> 1 (and sometimes back) inside the window, so the motion is always visible."""
    duration = float(t[-1])
    dur = min(rng.uniform(*typical_s), 0.7 * duration)
    t0 = rng.uniform(0.0, max(duration - dur, 0.0) * 0.6)
    p = _smoothstep((t - t0) / dur)
    back_at = t0 + dur + rng.uniform(0.1, 0.6)
    if rng.random() < 0.3 and back_at + 0.5 * dur < duration:
        p = p * (1 - _smoothstep((t - back_at) / dur))
    return p


def generate_track(
    rng: np.random.Generator, label: str, *, track_id: int = 0, with_pose: bool = True
) -> Track:
    """One synthetic track of ``label`` as a detector would report it (pixels, noisy)."""
    if label not in LABELS:
        raise ValueError(f"unknown action label {label!r}; known: {list(LABELS)}")
    fps = float(rng.choice([5, 8, 10, 12, 15, 20, 24, 25, 30]))
    duration = rng.uniform(0.5, 4.0)
    n = int(np.clip(round(duration * fps) + 1, 8, 64))
    t = np.arange(n) / fps
    width = int(rng.uniform(320, 1920))
    height = int(width * rng.uniform(0.5, 1.0))
    body = rng.uniform(0.2, 0.9) * height  # full-body height in pixels
    r0 = body / 2

    hip_x = np.full(n, rng.uniform(0.2, 0.8) * width)
    hip_y = np.full(n, rng.uniform(0.3, 0.7) * height)
    radius = np.full(n, r0)
    fb_ang = np.full(n, rng.normal(0, 0.1))  # full-body point direction, from "up"
    torso = np.full(n, rng.uniform(0.22, 0.32) * body)
    torso_ang = np.full(n, rng.normal(0, 0.08))
    ub_len = np.full(n, rng.uniform(0.25, 0.4) * body)
    ub_ang = np.full(n, rng.normal(0, 0.1))
    shoulder_shift = np.zeros((n, 2))
    head_shift = np.zeros((n, 2))
    head_up = rng.uniform(0.08, 0.16) * body
    head_size = rng.uniform(0.15, 0.28) * body
    box_w = np.full(n, rng.uniform(0.3, 0.45) * body)  # YOLO-shape box width
    box_extend = np.zeros((n, 2))  # YOLO-shape box growth (sideways, upwards)

    # Everyone sways a little (and shifts weight); standing is just this.
    sway = rng.uniform(0, 0.012) * body
    phase = rng.uniform(0, 2 * np.pi)
    hip_x += sway * np.sin(2 * np.pi * rng.uniform(0.15, 0.6) * t + phase)
    hip_y += 0.3 * sway * np.sin(2 * np.pi * rng.uniform(0.15, 0.6) * t)

    if label == "walking":
        speed = math.exp(rng.uniform(math.log(0.12), math.log(4.0))) * body
        heading = rng.uniform(-0.45, 0.45) + (np.pi if rng.random() < 0.5 else 0.0)
        hip_x += speed * math.cos(heading) * t
        hip_y += speed * math.sin(heading) * t
        step_hz = rng.uniform(1.4, 2.6)
        hip_y += rng.uniform(0, 0.03) * body * np.sin(2 * np.pi * step_hz * t + phase)
        radius *= np.exp(rng.uniform(-0.08, 0.08) * t / t[-1])  # a little toward/away
        torso_ang += math.copysign(rng.uniform(0, 0.1), math.cos(heading))
        ub_ang += rng.uniform(0, 0.05) * np.sin(2 * np.pi * step_hz * t)
        box_w *= 1 + rng.uniform(0, 0.15) * np.abs(np.sin(np.pi * step_hz * t))
    elif label == "reaching":
        p = _motion_profile(rng, t, (0.4, 1.5))
        reach = rng.uniform(0.15, 0.45) * body
        side = 1.0 if rng.random() < 0.5 else -1.0
        ang = side * rng.uniform(0.3, 1.6)  # from straight up to slightly below horizontal
        direction = np.array([math.sin(ang), -math.cos(ang)])
        shoulder_shift += 0.25 * reach * p[:, None] * direction
        head_shift += 0.2 * reach * p[:, None] * direction
        ub_ang += 0.6 * p * (ang - ub_ang)
        ub_len += 0.8 * reach * p
        fb_ang += 0.3 * p * ang
        radius *= 1 + 0.1 * p
        box_extend[:, 0] = reach * p * abs(direction[0]) * side
        box_extend[:, 1] = reach * p * max(-direction[1], 0.0) * 0.5
    elif label == "crouching":
        p = _motion_profile(rng, t, (0.5, 1.5))
        shrink = rng.uniform(0.15, 0.4)
        hip_y += shrink * r0 * rng.uniform(0.7, 1.3) * p  # feet stay roughly where they are
        radius *= 1 - shrink * p
        lean = rng.uniform(0.2, 0.6) * (1.0 if rng.random() < 0.5 else -1.0)
        torso_ang += lean * p
        torso *= 1 - 0.2 * p
        box_w *= 1 + 0.3 * shrink * p

    # Detector noise: position jitter, size jitter, the odd glitch, missed frames.
    jitter = rng.uniform(0.003, 0.025) * body
    size_jitter = rng.uniform(0.005, 0.04)
    glitch = np.ones(n)
    if rng.random() < 0.1:
        glitch[rng.integers(0, n)] = 5.0

    def noise(shape: tuple[int, ...]) -> np.ndarray:
        scale = jitter * (glitch if len(shape) == 1 else glitch[:, None])
        return rng.normal(0, 1, shape) * scale

    radius = radius * np.exp(rng.normal(0, size_jitter, n))
    keep = rng.random(n) >= rng.uniform(0, 0.12)
    keep[0] = keep[-1] = True
    scores = rng.uniform(0.55, 0.99, n)

    def unit(a: np.ndarray) -> np.ndarray:
        return np.stack([np.sin(a), -np.cos(a)], axis=1)

    hip = np.stack([hip_x, hip_y], axis=1) + noise((n, 2))
    points: list[TrackPoint] = []
    if with_pose:
        full = hip + radius[:, None] * unit(fb_ang) + noise((n, 2))
        shoulder = hip + torso[:, None] * unit(torso_ang) + shoulder_shift + noise((n, 2))
        upper = shoulder + ub_len[:, None] * unit(ub_ang) + noise((n, 2))
        head_c = shoulder + head_shift + np.array([0.0, -head_up]) + noise((n, 2))
        head_half = head_size / 2 * np.exp(rng.normal(0, size_jitter, n))
        r_obs = np.linalg.norm(full - hip, axis=1)
        for i in np.flatnonzero(keep):
            hx, hy = hip[i]
            det = Detection(
                box=(
                    head_c[i, 0] - head_half[i],
                    head_c[i, 1] - head_half[i],
                    head_c[i, 0] + head_half[i],
                    head_c[i, 1] + head_half[i],
                ),
                score=float(scores[i]),
                keypoints=(
                    Keypoint("mid_hip", hx, hy),
                    Keypoint("full_body", full[i, 0], full[i, 1]),
                    Keypoint("mid_shoulder", shoulder[i, 0], shoulder[i, 1]),
                    Keypoint("upper_body", upper[i, 0], upper[i, 1]),
                ),
                # Like the detector: the square around mid-hip, clipped to the image.
                body_box=(
                    max(hx - r_obs[i], 0.0),
                    max(hy - r_obs[i], 0.0),
                    min(hx + r_obs[i], width),
                    min(hy + r_obs[i], height),
                ),
            )
            points.append(TrackPoint(int(i), det))
    else:
        edges = noise((n, 4)) * 0.7
        half_w = box_w * radius / r0 / 2
        left = hip[:, 0] - half_w + np.minimum(box_extend[:, 0], 0) + edges[:, 0]
        right = hip[:, 0] + half_w + np.maximum(box_extend[:, 0], 0) + edges[:, 1]
        top = hip[:, 1] - 1.1 * radius - box_extend[:, 1] + edges[:, 2]
        bottom = hip[:, 1] + 0.9 * radius + edges[:, 3]
        for i in np.flatnonzero(keep):
            box = (float(left[i]), float(top[i]), float(right[i]), float(bottom[i]))
            points.append(TrackPoint(int(i), Detection(box=box, score=float(scores[i]))))
    return Track(track_id=track_id, points=tuple(points), frame_size=(width, height), fps=fps)


def generate_dataset(
    seed: int, per_class: int, no_pose_fraction: float = 0.25
) -> tuple[list[Track], np.ndarray]:
    """``per_class`` tracks of every label, shuffled; returns (tracks, label indices)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(LABELS)), per_class)
    rng.shuffle(labels)
    tracks = [
        generate_track(rng, LABELS[y], track_id=i, with_pose=rng.random() >= no_pose_fraction)
        for i, y in enumerate(labels)
    ]
    return tracks, labels
