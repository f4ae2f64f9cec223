"""Synthetic person tracks from an articulated 3-D skeleton, for ``action`` v2 and its tests.

A stick figure with the 17 COCO joints (bone lengths from a random stature and random body
proportions) is driven by joint angles over time, placed in a world, and filmed by a pinhole
camera; what a YOLO-pose detector would then report (17 scored keypoints, a full-body box,
``body_box`` None) is the track. Classes (:data:`LABELS`) differ by the motion:

* ``walking``: gait cycle (hip/knee swing, arm counter-swing, bob from the leg geometry), the
  pelvis translating at 0.25-2 m/s along any heading (towards, away from, across the camera);
* ``standing``: sway, weight shifts, small arm movements (hanging, holding something in front,
  hands on the hips), head turns;
* ``reaching``: one or both arms raise and extend towards a shelf from chest height to overhead,
  the torso may lean, tiptoes for high shelves; feet stay;
* ``crouching``: knee and hip flexion (the hips drop to near the heels), the torso leans forward,
  arms forward for balance or hands to the floor;
* ``other``: waving, jumping, turning on the spot, bending at the waist with straight legs.

Reaching and crouching sometimes start already in the pose (no motion), so the model must read
posture from single frames. Camera: yaw all around the person, pitch and roll from
:class:`Conditions`, distance 3-12 m, person height 40 px to 85% of the frame, frame width
320-1920, 5-30 fps, 0.8-4 s. Detector noise: keypoint jitter proportional to size, lower scores
for the far side and the face seen from behind, random misses, an occluded limb group for a
span, out-of-frame joints, the odd glitch frame, frames without keypoints, dropped frames, box
jitter; a share of tracks carries no keypoints at all (box-only). One seed, one data set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deployments.models.keypoints import COCO17

LABELS: tuple[str, ...] = ("walking", "standing", "reaching", "crouching", "other")
OTHER_MOTIONS: tuple[str, ...] = ("waving", "jumping", "turning", "bending")
J = {name: i for i, name in enumerate(COCO17)}


@dataclass(frozen=True)
class Conditions:
    """Camera and noise ranges. :data:`TRAIN` is what v2 trains on; :data:`HARD` is harder."""

    noise: float = 1.0  # multiplies every noise amplitude and probability
    pitch_deg: tuple[float, float] = (0.0, 30.0)  # camera looking down
    roll_deg: float = 3.0  # |camera roll| up to this


TRAIN = Conditions()
# Doubled noise and viewpoints training never saw: a steep ceiling camera, tilted.
HARD = Conditions(noise=2.0, pitch_deg=(32.0, 60.0), roll_deg=10.0)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _profile(rng: np.random.Generator, t: np.ndarray, typical_s: tuple[float, float]) -> np.ndarray:
    """0 -> 1 (hold; sometimes back, sometimes at 1 throughout) over the track's times."""
    duration = float(t[-1])
    if rng.random() < 0.2:  # already in the pose: small adjustments only
        return 1.0 - 0.1 * _smoothstep(t / duration) * rng.random()
    dur = min(rng.uniform(*typical_s), 0.6 * duration)
    t0 = rng.uniform(0.0, max(duration - dur, 0.0) * 0.5)
    p = _smoothstep((t - t0) / dur)
    back_at = t0 + dur + rng.uniform(0.1, 0.6)
    if rng.random() < 0.3 and back_at + 0.6 * dur < duration:
        p = p * (1 - _smoothstep((t - back_at) / dur))
    return p


def _rot(axis: int, a: np.ndarray) -> np.ndarray:
    """Rotations ``[n, 3, 3]`` about x (0), y (1) or z (2) by angles ``a [n]``."""
    c, s = np.cos(a), np.sin(a)
    r = np.zeros((len(a), 3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r[:, axis, axis] = 1.0
    r[:, i, i], r[:, i, j], r[:, j, i], r[:, j, j] = c, -s, s, c
    return r


def _limb(flex: np.ndarray, abd: np.ndarray, side: float) -> np.ndarray:
    """Unit direction ``[n, 3]`` of a limb hanging down, flexed forward then abducted outward.

    Body frame: x = the person's left, y = up, z = forward.
    """
    c = np.cos(flex)
    return np.stack([side * c * np.sin(abd), -c * np.cos(abd), np.sin(flex)], axis=1)


def _angles(rng: np.random.Generator, label: str, t: np.ndarray) -> dict[str, np.ndarray]:
    """Joint angles (rad) over time, the heading, the forward speed and an extra lift (m/S)."""
    n = len(t)
    z = np.zeros(n)
    a = {k: z.copy() for k in ("hf_l", "hf_r", "ha_l", "ha_r", "kn_l", "kn_r", "pitch", "roll")}
    a.update({k: z.copy() for k in ("twist", "head", "lift", "speed", "heading")})
    # Resting arms: hanging, holding something in front, or hands on the hips.
    style = rng.choice(3, p=[0.6, 0.3, 0.1])
    for s in ("l", "r"):
        if style == 0:
            a[f"sf_{s}"], a[f"sa_{s}"] = z + rng.uniform(-0.1, 0.2), z + rng.uniform(0.0, 0.2)
            a[f"el_{s}"] = z + rng.uniform(0.0, 0.4)
        elif style == 1:
            a[f"sf_{s}"], a[f"sa_{s}"] = z + rng.uniform(0.1, 0.5), z + rng.uniform(0.0, 0.2)
            a[f"el_{s}"] = z + rng.uniform(0.9, 1.6)
        else:
            a[f"sf_{s}"], a[f"sa_{s}"] = z + rng.uniform(-0.4, -0.1), z + rng.uniform(0.4, 0.7)
            a[f"el_{s}"] = z + rng.uniform(1.3, 1.8)
    # Everyone sways a little and turns the head now and then.
    sway_hz = rng.uniform(0.1, 0.5)
    a["roll"] += rng.uniform(0, 0.04) * np.sin(2 * np.pi * sway_hz * t + rng.uniform(0, 6.3))
    a["pitch"] += rng.uniform(-0.03, 0.1)
    a["head"] += rng.uniform(0, 0.8) * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t)
    a["heading"] += rng.uniform(0, 2 * np.pi)
    side = "l" if rng.random() < 0.5 else "r"

    if label == "walking":
        f = rng.uniform(0.6, 1.05)  # gait cycles per second
        amp = rng.uniform(0.15, 0.45)
        ph = 2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)
        for s, off in (("l", 0.0), ("r", np.pi)):
            a[f"hf_{s}"] = amp * np.sin(ph + off)
            swing = np.maximum(0, np.cos(ph + off - 0.3))  # the knee bends as the leg swings
            a[f"kn_{s}"] = 0.05 + amp * rng.uniform(1.6, 2.6) * swing
            if style != 1 or rng.random() < 0.5:
                a[f"sf_{s}"] = a[f"sf_{s}"] - rng.uniform(0.3, 1.2) * amp * np.sin(ph + off)
        a["twist"] += 0.1 * amp * np.sin(ph)
        a["speed"] += f * 4 * 0.49 * np.sin(amp) * rng.uniform(0.85, 1.1)  # stature / s
        a["heading"] += rng.uniform(-0.3, 0.3) * t / t[-1]
    elif label == "standing":
        shift = rng.uniform(0, 0.15) * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t)
        a["kn_l"], a["kn_r"] = np.maximum(shift, 0), np.maximum(-shift, 0)
        a["hf_l"], a["hf_r"] = a["kn_l"] / 2, a["kn_r"] / 2
        for s in ("l", "r"):
            hz = rng.uniform(0.1, 0.6)
            wob = rng.uniform(0, 0.15) * np.sin(2 * np.pi * hz * t + rng.random())
            a[f"sf_{s}"] = a[f"sf_{s}"] + wob
            a[f"el_{s}"] = a[f"el_{s}"] + np.abs(wob)
    elif label == "reaching":
        p = _profile(rng, t, (0.4, 1.5))
        target = rng.uniform(1.3, 2.9)
        for s in ("l", "r") if rng.random() < 0.3 else (side,):
            a[f"sf_{s}"] += p * (target + rng.uniform(-0.1, 0.1) - a[f"sf_{s}"])
            a[f"sa_{s}"] += p * (rng.uniform(0.0, 0.6) - a[f"sa_{s}"])
            a[f"el_{s}"] += p * (rng.uniform(0.0, 0.3) - a[f"el_{s}"])
        if target < 1.9:
            a["pitch"] += p * rng.uniform(0.0, 0.35)
        a["roll"] += p * rng.uniform(0.0, 0.2) * (-1 if side == "l" else 1)
        if target > 2.3:
            a["lift"] += p * rng.uniform(0.0, 0.03)
    elif label == "crouching":
        p = _profile(rng, t, (0.5, 1.5))
        knee = rng.uniform(1.3, 2.5)
        hip = knee * rng.uniform(0.6, 0.85)
        to_floor = rng.random() < 0.35
        for s in ("l", "r"):
            a[f"kn_{s}"] = p * (knee + rng.uniform(-0.1, 0.1))
            a[f"hf_{s}"] = p * (hip + rng.uniform(-0.1, 0.1))
            a[f"ha_{s}"] = p * rng.uniform(0.0, 0.3)
            arm = rng.uniform(0.2, 0.6) if to_floor else rng.uniform(0.3, 1.3)
            a[f"sf_{s}"] += p * (arm - a[f"sf_{s}"])
            a[f"el_{s}"] += p * ((0.1 if to_floor else rng.uniform(0.2, 1.2)) - a[f"el_{s}"])
        a["pitch"] += p * rng.uniform(0.2, 0.5 if not to_floor else 0.9)
    else:  # other
        motion = OTHER_MOTIONS[rng.integers(len(OTHER_MOTIONS))]
        if motion == "waving":
            hz = rng.uniform(1.2, 3.0)
            osc = np.sin(2 * np.pi * hz * t)
            a[f"sf_{side}"] = z + rng.uniform(1.6, 2.8) + 0.15 * osc
            a[f"sa_{side}"] = z + rng.uniform(0.2, 0.8) + rng.uniform(0.2, 0.5) * osc
            a[f"el_{side}"] = z + rng.uniform(0.3, 1.0) + rng.uniform(0.2, 0.5) * osc
        elif motion == "jumping":
            period = rng.uniform(0.6, 1.0)
            ph = (t / period + rng.random()) % 1.0
            flight = np.where(ph > 0.5, np.sin((ph - 0.5) * 2 * np.pi), 0.0)
            crouch = np.where(ph <= 0.5, np.sin(ph * 2 * np.pi), 0.0)
            a["lift"] += rng.uniform(0.06, 0.2) * flight
            for s in ("l", "r"):
                a[f"kn_{s}"] = rng.uniform(0.5, 1.1) * crouch
                a[f"hf_{s}"] = 0.6 * a[f"kn_{s}"]
                a[f"sf_{s}"] = a[f"sf_{s}"] + rng.uniform(0.5, 2.0) * (flight - 0.5 * crouch)
        elif motion == "turning":
            turn = rng.choice([-1, 1]) * rng.uniform(1.5, 3.5)
            a["heading"] += turn * _smoothstep(t / t[-1] * rng.uniform(1.0, 1.5))
            ph = 2 * np.pi * rng.uniform(1.0, 1.8) * t
            a["hf_l"], a["hf_r"] = 0.12 * np.sin(ph), -0.12 * np.sin(ph)
            a["kn_l"] = 0.25 * np.maximum(0, np.cos(ph))
            a["kn_r"] = 0.25 * np.maximum(0, -np.cos(ph))
        else:  # bending at the waist, legs (nearly) straight
            p = _profile(rng, t, (0.5, 1.5))
            bend = rng.uniform(0.9, 1.5)
            a["pitch"] += p * bend
            for s in ("l", "r"):
                a[f"kn_{s}"] = p * rng.uniform(0.0, 0.3)
                a[f"hf_{s}"] = -p * rng.uniform(0.0, 0.2)
                a[f"sf_{s}"] += p * (bend * rng.uniform(0.7, 1.1) - a[f"sf_{s}"])
                a[f"el_{s}"] = a[f"el_{s}"] * (1 - p)
    return a


def skeleton(rng: np.random.Generator, label: str, t: np.ndarray) -> np.ndarray:
    """World positions ``[n, 17, 3]`` (metres; y up, ground at 0) of a ``label`` motion."""
    if label not in LABELS:
        raise ValueError(f"unknown action label {label!r}; known: {list(LABELS)}")
    n = len(t)
    stat = rng.uniform(1.5, 1.95)

    def bone(k: float) -> float:
        return k * stat * rng.uniform(0.9, 1.1)

    thigh, shank, ankle_h = bone(0.245), bone(0.246), 0.04 * stat
    hip_w, sho_w, torso = bone(0.09), bone(0.13), bone(0.30)
    upper, fore = bone(0.186), bone(0.146)
    a = _angles(rng, label, t)
    # Body frame, relative to the pelvis centre. Legs:
    pts = np.zeros((n, 17, 3))
    for s, sign in (("l", 1.0), ("r", -1.0)):
        side = "left" if s == "l" else "right"
        hipj = np.array([sign * hip_w, 0.0, 0.0])
        knee = hipj + thigh * _limb(a[f"hf_{s}"], a[f"ha_{s}"], sign)
        ankle = knee + shank * _limb(a[f"hf_{s}"] - a[f"kn_{s}"], a[f"ha_{s}"], sign)
        pts[:, J[f"{side}_hip"]], pts[:, J[f"{side}_knee"]] = hipj, knee
        pts[:, J[f"{side}_ankle"]] = ankle
    # Upper body in the torso frame, rotated about the pelvis by the torso angles.
    up = np.zeros((n, 17, 3))
    neck = np.array([0.0, torso, 0.0])
    for s, sign in (("l", 1.0), ("r", -1.0)):
        side = "left" if s == "l" else "right"
        sho = neck + np.array([sign * sho_w, 0.0, 0.0])
        elbow = sho + upper * _limb(a[f"sf_{s}"], a[f"sa_{s}"], sign)
        wrist = elbow + fore * _limb(a[f"sf_{s}"] + a[f"el_{s}"], a[f"sa_{s}"], sign)
        up[:, J[f"{side}_shoulder"]], up[:, J[f"{side}_elbow"]] = sho, elbow
        up[:, J[f"{side}_wrist"]] = wrist
    face = stat * np.array(  # nose, eyes, ears, relative to the neck (stature units)
        [
            [0.0, 0.09, 0.05],
            [0.018, 0.095, 0.045],
            [-0.018, 0.095, 0.045],
            [0.04, 0.09, 0.0],
            [-0.04, 0.09, 0.0],
        ]
    )
    up[:, :5] = neck + np.einsum("nij,kj->nki", _rot(1, a["head"]), face)
    r_torso = _rot(1, a["twist"]) @ _rot(0, a["pitch"]) @ _rot(2, a["roll"])
    upper_idx = [J[k] for k in COCO17[:11]]
    pts[:, upper_idx] = np.einsum("nij,nkj->nki", r_torso, up[:, upper_idx])
    # Feet on the ground: the pelvis is as high as the longer leg reaches (plus any lift); the
    # feet stay put (the pelvis moves back as the knees go forward), unless walking.
    ankles = pts[:, [J["left_ankle"], J["right_ankle"]]]
    height = -ankles[:, :, 1].min(axis=1) + ankle_h + a["lift"] * stat
    pts[:, :, 1] += height[:, None]
    if label != "walking":
        pts[:, :, 2] -= ankles[:, :, 2].mean(axis=1)[:, None]
    # World: heading about the vertical, then the walk.
    world = np.einsum("nij,nkj->nki", _rot(1, a["heading"]), pts)
    dist = np.concatenate([[0.0], np.cumsum(a["speed"][1:] * np.diff(t))]) * stat
    world[:, :, 0] += (dist * np.sin(a["heading"]))[:, None]
    world[:, :, 2] += (dist * np.cos(a["heading"]))[:, None]
    return world
