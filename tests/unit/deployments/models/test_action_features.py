"""Track features: invariant to position and size, robust to resampling and detector shape."""

from __future__ import annotations

import numpy as np
import pytest

from deployments.models.action_features import (
    FEATURE_NAMES,
    NUM_FEATURES,
    batch_features,
    reference_box,
    track_features,
)
from deployments.models.yolo_pose import KEYPOINT_NAMES
from deployments.types import Detection, Keypoint, Track, TrackPoint
from model_registry.references.action_tracks import LABELS, generate_track

COCO = KEYPOINT_NAMES  # the 17 COCO names a YOLO-pose detector reports


def col(name: str) -> int:
    return FEATURE_NAMES.index(name)


def blazepose(
    hx: float, hy: float, r: float, clip_to: tuple[float, float] | None = None
) -> Detection:
    """A BlazePose-shaped detection: head box, 4 keypoints, body_box (optionally clipped)."""
    x1, y1, x2, y2 = hx - r, hy - r, hx + r, hy + r
    if clip_to is not None:
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, clip_to[0]), min(y2, clip_to[1])
    return Detection(
        box=(hx - 0.15 * r, hy - 1.4 * r, hx + 0.15 * r, hy - 1.1 * r),
        score=0.9,
        keypoints=(
            Keypoint("mid_hip", hx, hy),
            Keypoint("full_body", hx, hy - r),
            Keypoint("mid_shoulder", hx, hy - 0.55 * r),
            Keypoint("upper_body", hx, hy - 1.2 * r),
        ),
        body_box=(x1, y1, x2, y2),
    )


def yolo(cx: float, cy: float, h: float) -> Detection:
    box = (cx - 0.2 * h, cy - 0.5 * h, cx + 0.2 * h, cy + 0.5 * h)
    kps = tuple(Keypoint(n, cx, cy - 0.3 * h + 0.04 * h * i, 0.8) for i, n in enumerate(COCO))
    return Detection(box=box, score=0.8, keypoints=kps)


def walker(
    n: int, fps: float, speed_px_s: float, r: float = 100.0, frames: list[int] | None = None
) -> Track:
    idx = frames if frames is not None else list(range(n))
    points = tuple(TrackPoint(i, blazepose(200 + speed_px_s * i / fps, 300, r)) for i in idx)
    return Track(track_id=1, points=points, frame_size=(1280, 720), fps=fps)


def transformed(track: Track, a: float, bx: float, by: float) -> Track:
    """The same track seen bigger/smaller (a) and elsewhere (bx, by)."""

    def tb(b: tuple[float, float, float, float] | None) -> tuple[float, ...] | None:
        if b is None:
            return None
        return (a * b[0] + bx, a * b[1] + by, a * b[2] + bx, a * b[3] + by)

    def td(d: Detection) -> Detection:
        kps = tuple(Keypoint(k.name, a * k.x + bx, a * k.y + by, k.score) for k in d.keypoints)
        return Detection(
            box=tb(d.box),
            score=d.score,
            keypoints=kps,  # type: ignore[arg-type]
            body_box=tb(d.body_box),
        )  # type: ignore[arg-type]

    return Track(
        track.track_id,
        tuple(TrackPoint(p.frame_index, td(p.detection)) for p in track.points),
        track.frame_size,
        track.fps,
    )


def test_feature_names_are_unique_and_shape_matches() -> None:
    assert len(set(FEATURE_NAMES)) == NUM_FEATURES
    x = track_features(walker(10, 10, 50), 16)
    assert x.shape == (16, NUM_FEATURES)
    assert x.dtype == np.float32


@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("with_pose", [True, False])
def test_features_invariant_to_translation_and_scale(label: str, with_pose: bool) -> None:
    rng = np.random.default_rng(7)
    track = generate_track(rng, label, with_pose=with_pose)
    base = track_features(track, 16)
    for a, bx, by in [(2.5, 300.0, -40.0), (0.3, -20.0, 500.0)]:
        np.testing.assert_allclose(
            track_features(transformed(track, a, bx, by), 16), base, atol=1e-4
        )


def test_velocity_is_per_second_and_in_body_heights() -> None:
    # 100 px/s with a 200 px body (r = 100): half a body height per second, at any fps.
    for fps in (5.0, 10.0, 30.0):
        x = track_features(walker(int(2 * fps), fps, 100.0), 16)
        np.testing.assert_allclose(x[:, col("body_vx")], 0.5, atol=1e-5)
        np.testing.assert_allclose(x[:, col("body_vy")], 0.0, atol=1e-6)
        # Displacement from the track's median ramps from -0.5 to +0.5 body heights over 2 s.
        assert x[0, col("body_dx")] < -0.4 and x[-1, col("body_dx")] > 0.4


def test_missed_frames_are_interpolated_not_zeroed() -> None:
    full = track_features(walker(20, 10, 80), 16)
    gappy = track_features(walker(20, 10, 80, frames=[0, 1, 2, 6, 7, 12, 13, 19]), 16)
    np.testing.assert_allclose(gappy, full, atol=1e-5)


def test_point_order_and_duplicate_frames_do_not_matter() -> None:
    track = walker(12, 10, 60)
    shuffled = Track(1, tuple(reversed(track.points)) + track.points[3:4], track.frame_size, 10)
    np.testing.assert_allclose(track_features(shuffled, 16), track_features(track, 16))


def test_still_person_has_no_motion() -> None:
    x = track_features(walker(16, 10, 0.0), 16)
    np.testing.assert_allclose(x[:, col("has_pose")], 1.0)
    others = [i for i, n in enumerate(FEATURE_NAMES) if n != "has_pose"]
    np.testing.assert_allclose(x[:, others], 0.0, atol=1e-6)


def test_clipped_body_box_does_not_fake_a_posture_change() -> None:
    # The detector clips body_box to the image: a person walking out of the left edge would
    # seem to shrink and shift. The keypoint circle is used instead, so features are unchanged.
    size = (640, 480)
    pts = [TrackPoint(i, blazepose(150 - 15 * i, 300, 140, clip_to=size)) for i in range(12)]
    unclipped = [TrackPoint(i, blazepose(150 - 15 * i, 300, 140)) for i in range(12)]
    np.testing.assert_allclose(
        track_features(Track(0, tuple(pts), size, 10), 16),
        track_features(Track(0, tuple(unclipped), size, 10), 16),
    )
    assert reference_box(pts[-1].detection) == pytest.approx((-155, 160, 125, 440))


def test_yolo_pose_detections_use_the_box_and_flag_no_pose() -> None:
    pts = tuple(TrackPoint(i, yolo(100 + 20 * i, 300, 200)) for i in range(10))
    x = track_features(Track(0, pts, (1280, 720), 10.0), 16)
    np.testing.assert_allclose(x[:, col("has_pose")], 0.0)
    pose_cols = [
        i
        for i, n in enumerate(FEATURE_NAMES)
        if n.startswith(("full_body", "mid_shoulder", "upper_body", "head"))
    ]
    np.testing.assert_allclose(x[:, pose_cols], 0.0)
    np.testing.assert_allclose(x[:, col("body_vx")], 1.0, atol=1e-5)  # 200 px/s, 200 px tall


def test_crouch_shows_as_shrinking_height() -> None:
    pts = tuple(TrackPoint(i, blazepose(300, 300 + 4 * i, 100 * (1 - 0.03 * i))) for i in range(10))
    x = track_features(Track(0, pts, (640, 480), 10.0), 16)
    assert np.all(x[:, col("body_vlog_height")] < -0.2)
    assert x[0, col("body_dlog_height")] > 0 > x[-1, col("body_dlog_height")]


def test_one_point_track_is_constant() -> None:
    x = track_features(walker(1, 10, 100), 16)
    assert np.all(x == x[0])
    assert x[0, col("body_vx")] == 0


def test_bad_tracks_are_refused() -> None:
    with pytest.raises(ValueError, match="no points"):
        track_features(Track(3, (), (640, 480), 10.0), 16)
    with pytest.raises(ValueError, match="fps"):
        track_features(Track(3, walker(3, 10, 1).points, (640, 480), 0.0), 16)
    with pytest.raises(ValueError, match="seq_len"):
        track_features(walker(3, 10, 1), 1)


def test_batch_features_stacks_and_handles_empty() -> None:
    assert batch_features([], 16).shape == (0, 16, NUM_FEATURES)
    tracks = [walker(8, 10, 10), walker(20, 30, 100)]
    x = batch_features(tracks, 12)
    assert x.shape == (2, 12, NUM_FEATURES)
    np.testing.assert_array_equal(x[1], track_features(tracks[1], 12))


def test_extreme_values_are_clipped() -> None:
    # A wrong fps (1000 instead of 10) must not produce values far outside training range.
    x = track_features(walker(10, 1000.0, 100000.0), 16)
    assert np.abs(x).max() <= 8.0
