"""COCO-17 action features (action v2): invariances, the box-only fallback, missing joints."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from deployments.models.action_features_coco import (
    FEATURE_NAMES,
    NUM_FEATURES,
    POS_JOINTS,
    batch_features,
    mirrored,
    reversed_in_time,
    track_features,
)
from deployments.models.keypoints import COCO17
from deployments.types import Detection, Keypoint, Track, TrackPoint
from model_registry.references.skeleton_tracks import generate_track

SEQ = 16
IDX = {name: i for i, name in enumerate(FEATURE_NAMES)}
JOINT_COLS = [i for i, n in enumerate(FEATURE_NAMES) if i >= IDX["has_pose"]]


def coco_track(label: str = "walking", seed: int = 0) -> Track:
    rng = np.random.default_rng(seed)
    while True:
        track = generate_track(rng, label)
        if all(p.detection.keypoints for p in track.points):
            return track


def transformed(track: Track, fn: object) -> Track:
    """``track`` with every point mapped through ``fn(x, y) -> (x, y)`` (boxes re-sorted)."""
    f = fn  # type: ignore[assignment]

    def det(d: Detection) -> Detection:
        (ax, ay), (bx, by) = f(d.box[0], d.box[1]), f(d.box[2], d.box[3])  # type: ignore[operator]
        kps = tuple(replace(k, x=f(k.x, k.y)[0], y=f(k.x, k.y)[1]) for k in d.keypoints)  # type: ignore[operator]
        return replace(d, box=(min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)), keypoints=kps)

    points = tuple(TrackPoint(p.frame_index, det(p.detection)) for p in track.points)
    return replace(track, points=points)


def test_shape_names_and_finite() -> None:
    x = track_features(coco_track(), SEQ)
    assert x.shape == (SEQ, NUM_FEATURES) and x.dtype == np.float32
    assert np.isfinite(x).all()
    assert len(set(FEATURE_NAMES)) == NUM_FEATURES
    assert (x[:, IDX["has_pose"]] == 1).all()


@pytest.mark.parametrize("label", ["walking", "crouching", "reaching"])
def test_invariant_to_translation_and_scale(label: str) -> None:
    track = coco_track(label, seed=3)
    base = track_features(track, SEQ)
    moved = transformed(track, lambda x, y: (2.5 * x + 300.0, 2.5 * y - 40.0))
    np.testing.assert_allclose(track_features(moved, SEQ), base, atol=2e-4)


def test_mirroring_the_track_is_mirroring_the_features() -> None:
    track = coco_track("reaching", seed=5)
    swap = {
        n: n.replace("left_", "@").replace("right_", "left_").replace("@", "right_") for n in COCO17
    }

    flipped = transformed(track, lambda x, y: (-x, y))
    points = tuple(
        TrackPoint(
            p.frame_index,
            replace(
                p.detection,
                keypoints=tuple(replace(k, name=swap[k.name]) for k in p.detection.keypoints),
            ),
        )
        for p in flipped.points
    )
    got = track_features(replace(flipped, points=points), SEQ)
    np.testing.assert_allclose(got, mirrored(track_features(track, SEQ)), atol=2e-4)


def test_time_reversal_negates_velocities_and_flips_time() -> None:
    track = coco_track("walking", seed=2)
    last = track.points[-1].frame_index
    backwards = replace(
        track,
        points=tuple(TrackPoint(last - p.frame_index, p.detection) for p in track.points[::-1]),
    )
    got = track_features(backwards, SEQ)
    want = reversed_in_time(track_features(track, SEQ)[None])[0]
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_box_only_tracks_fall_back_to_box_features() -> None:
    track = coco_track("walking", seed=1)
    plain = replace(
        track,
        points=tuple(
            TrackPoint(p.frame_index, replace(p.detection, keypoints=())) for p in track.points
        ),
    )
    x = track_features(plain, SEQ)
    assert np.isfinite(x).all()
    assert (x[:, JOINT_COLS] == 0).all()  # has_pose and everything after it
    np.testing.assert_allclose(
        x[:, : IDX["has_pose"]], track_features(track, SEQ)[:, : IDX["has_pose"]], atol=1e-6
    )
    assert np.abs(x[:, IDX["body_vx"]]).max() > 0  # the box still moves


def test_low_confidence_and_garbage_joints_are_missing() -> None:
    track = coco_track("standing", seed=4)
    hidden = {"left_wrist", "right_wrist"}

    def hide(d: Detection) -> Detection:
        kps = tuple(
            replace(k, x=float("nan"), score=0.1) if k.name in hidden else k for k in d.keypoints
        )
        return replace(d, keypoints=kps)

    x = track_features(
        replace(
            track, points=tuple(TrackPoint(p.frame_index, hide(p.detection)) for p in track.points)
        ),
        SEQ,
    )
    assert np.isfinite(x).all()
    for name in ("left_wrist_x", "right_wrist_y", "wrist_above_shoulder", "arm_extension"):
        assert (x[:, IDX[name]] == 0).all(), name
    assert (x[:, IDX["wrists_visible"]] == 0).all()
    assert (x[:, IDX["has_pose"]] == 1).all()


def test_a_frame_without_hips_has_no_pose() -> None:
    track = coco_track("standing", seed=6)
    mid = len(track.points) // 2

    def drop_hips(i: int, d: Detection) -> Detection:
        if i != mid:
            return d
        kps = tuple(replace(k, score=0.0) if k.name.endswith("hip") else k for k in d.keypoints)
        return replace(d, keypoints=kps)

    points = tuple(
        TrackPoint(p.frame_index, drop_hips(i, p.detection)) for i, p in enumerate(track.points)
    )
    x = track_features(replace(track, points=points), len(track.points))
    has_pose = x[:, IDX["has_pose"]]
    assert has_pose.min() < 1 and has_pose.max() == 1
    assert np.isfinite(x).all()


def test_unscored_keypoints_count_as_seen_and_unknown_names_are_ignored() -> None:
    kps = tuple(Keypoint(n, 100.0 + i, 100.0 + 10 * i) for i, n in enumerate(COCO17))
    det = Detection(box=(80, 50, 140, 300), score=0.9, keypoints=(*kps, Keypoint("mid_hip", 0, 0)))
    track = Track(0, (TrackPoint(0, det), TrackPoint(1, det)), (640, 480), 10.0)
    x = track_features(track, 4)
    assert (x[:, IDX["visible_fraction"]] == 1).all()
    assert (x[:, [IDX["body_vx"], IDX["nose_vx"]]] == 0).all()
    assert x[0, IDX[f"{POS_JOINTS[0]}_y"]] < 0  # the nose is above the hips


def test_batch_and_errors() -> None:
    assert batch_features([], SEQ).shape == (0, SEQ, NUM_FEATURES)
    t = coco_track()
    assert batch_features([t, t], SEQ).shape == (2, SEQ, NUM_FEATURES)
    with pytest.raises(ValueError, match="seq_len"):
        track_features(t, 1)
    with pytest.raises(ValueError, match="no points"):
        track_features(replace(t, points=()), SEQ)
    with pytest.raises(ValueError, match="fps"):
        track_features(replace(t, fps=0.0), SEQ)
