"""Keypoint layouts: which named body points a detector reports and an action model consumes.

A layout is a name and an ordered tuple of keypoint names. Detectors declare theirs through
their decoder (BlazePose: ``blazepose4``; YOLO-pose: ``coco17``); action versions declare the
one they consume in ``manifest.preprocess.keypoint_layout``. The pipeline config check refuses a
detector/action pair whose layouts differ, unless the ``classify_tracks`` op derives the action's
layout from the detector's (``params.derive_keypoints``), see :func:`derive`.

Keypoints are matched by *name*, so a detection may carry the points of several layouts at once
(17 COCO points plus the 4 BlazePose points derived from them); each model picks its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

from deployments.types import Detection, Keypoint

LayoutName = Literal["coco17", "blazepose4"]

COCO17: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
# MediaPipe's pose detector: mid-hip, a point on the full-body circle around it, mid-shoulder,
# a point on the upper-body circle around that.
BLAZEPOSE4: tuple[str, ...] = ("mid_hip", "full_body", "mid_shoulder", "upper_body")

LAYOUTS: dict[str, tuple[str, ...]] = {"coco17": COCO17, "blazepose4": BLAZEPOSE4}
# The layout each detector decoder reports.
DECODER_LAYOUT: dict[str, str] = {"yolo_pose": "coco17", "blazepose": "blazepose4"}

# A COCO keypoint below this confidence is treated as not seen.
MIN_VISIBLE = 0.3


def layout_points(det: Detection, layout: str) -> dict[str, Keypoint] | None:
    """The detection's keypoints of ``layout`` by name, or None when it does not carry them all."""
    names = LAYOUTS[layout]
    found = {k.name: k for k in det.keypoints if k.name in names}
    return found if len(found) == len(names) else None


def _coco17_to_blazepose4(det: Detection) -> tuple[Keypoint, ...] | None:
    """BlazePose's four points from the 17 COCO ones (None without both hips and shoulders).

    Mid-hip and mid-shoulder are the means of the pairs. BlazePose's circle points lie on the
    circles that enclose the whole body (around mid-hip) and the upper body (around
    mid-shoulder), in the direction from hip to shoulder; the radii are the farthest visible
    keypoint (whole body) and the farthest visible head or arm keypoint (upper body).
    """
    pts = layout_points(det, "coco17")
    if pts is None:
        return None

    def seen(name: str) -> bool:
        score = pts[name].score
        return score is None or score >= MIN_VISIBLE

    if not all(seen(n) for n in ("left_hip", "right_hip", "left_shoulder", "right_shoulder")):
        return None
    hx = (pts["left_hip"].x + pts["right_hip"].x) / 2
    hy = (pts["left_hip"].y + pts["right_hip"].y) / 2
    sx = (pts["left_shoulder"].x + pts["right_shoulder"].x) / 2
    sy = (pts["left_shoulder"].y + pts["right_shoulder"].y) / 2
    torso = math.hypot(sx - hx, sy - hy)
    if torso <= 0:
        return None
    ux, uy = (sx - hx) / torso, (sy - hy) / torso
    visible = [pts[n] for n in COCO17 if seen(n)]
    body_r = max(math.hypot(k.x - hx, k.y - hy) for k in visible)
    upper = [pts[n] for n in COCO17[:11] if seen(n)]  # head, shoulders, arms
    upper_r = max(math.hypot(k.x - sx, k.y - sy) for k in upper)
    return (
        Keypoint("mid_hip", hx, hy),
        Keypoint("full_body", hx + ux * body_r, hy + uy * body_r),
        Keypoint("mid_shoulder", sx, sy),
        Keypoint("upper_body", sx + ux * upper_r, sy + uy * upper_r),
    )


_DERIVATIONS: dict[tuple[str, str], Callable[[Detection], tuple[Keypoint, ...] | None]] = {
    ("coco17", "blazepose4"): _coco17_to_blazepose4,
}


def can_derive(source: str, target: str) -> bool:
    return source == target or (source, target) in _DERIVATIONS


def derive(det: Detection, source: str, target: str) -> Detection:
    """``det`` with the ``target`` layout's points added (derived from ``source``'s).

    A detection that already carries ``target``, or whose ``source`` points are missing or
    unseen, is returned as it is: the action model then falls back to box-only features.
    """
    if source == target or layout_points(det, target) is not None:
        return det
    fn = _DERIVATIONS.get((source, target))
    if fn is None:
        raise ValueError(f"no derivation of keypoint layout {target!r} from {source!r}")
    extra = fn(det)
    if extra is None:
        return det
    return replace(det, keypoints=(*det.keypoints, *extra))
