"""Tracker: stable ids through crossings and gaps, births, deaths, short-track filtering."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from deployments.types import Detection, Keypoint, Track
from serving.pipelines.tracker import Tracker, TrackerConfig, assign, iou_matrix, track_detections

SIZE = (1280, 720)


def person(cx: float, cy: float = 360.0, h: float = 200.0, label: str = "person") -> Detection:
    return Detection(
        box=(cx - 0.2 * h, cy - h / 2, cx + 0.2 * h, cy + h / 2), score=0.9, label=label
    )


def blaze(hx: float, hy: float, r: float, head_dx: float) -> Detection:
    """BlazePose-shaped: a small head ``box`` and the full-body ``body_box``."""
    return Detection(
        box=(hx + head_dx - 15, hy - r - 15, hx + head_dx + 15, hy - r + 15),
        score=0.9,
        keypoints=(Keypoint("mid_hip", hx, hy), Keypoint("full_body", hx, hy - r)),
        body_box=(hx - r, hy - r, hx + r, hy + r),
    )


def xs(track: Track) -> list[float]:
    return [(p.detection.box[0] + p.detection.box[2]) / 2 for p in track.points]


def test_one_walker_is_one_track() -> None:
    frames = [[person(100 + 20 * i)] for i in range(12)]
    (track,) = track_detections(frames, SIZE, fps=15.0)
    assert track.track_id == 0
    assert [p.frame_index for p in track.points] == list(range(12))
    assert (track.frame_size, track.fps) == (SIZE, 15.0)


def test_parallel_people_keep_their_ids() -> None:
    # Side by side, walking the same way; the detector lists them in varying order.
    frames = []
    for i in range(15):
        a, b = person(100 + 15 * i, 250), person(100 + 15 * i, 480)
        frames.append([a, b] if i % 2 else [b, a])
    tracks = track_detections(frames, SIZE, fps=10.0)
    assert [t.track_id for t in tracks] == [0, 1]
    for t in tracks:
        ys = {(p.detection.box[1] + p.detection.box[3]) / 2 for p in t.points}
        assert len(ys) == 1 and len(t.points) == 15


@pytest.mark.parametrize("optimal", [True, False])
def test_crossing_people_keep_their_ids(optimal: bool) -> None:
    # Same size, same height in the image, opposite directions: their boxes overlap almost
    # completely for a few frames; the predicted positions keep the ids apart.
    frames = []
    for i in range(21):
        frames.append([person(200 + 40 * i), person(1010 - 40 * i, 370)])
    tracker = Tracker(TrackerConfig(), optimal=optimal)
    for i, dets in enumerate(frames):
        tracker.update(i, dets)
    tracks = tracker.tracks(SIZE, 10.0)
    assert len(tracks) == 2
    for t in tracks:
        assert len(t.points) == 21
        steps = np.diff(xs(t))
        assert np.all(steps > 0) or np.all(steps < 0), xs(t)


def test_short_tracks_are_dropped() -> None:
    frames: list[list[Detection]] = [[person(100 + 10 * i)] for i in range(10)]
    frames[4] = [*frames[4], person(900, 100)]  # a one-frame false positive
    frames[6] = [*frames[6], person(600, 600), person(610, 600, label="dog")]
    tracks = track_detections(frames, SIZE, fps=10.0, config=TrackerConfig(min_length=3))
    assert len(tracks) == 1 and len(tracks[0].points) == 10
    kept = track_detections(frames, SIZE, fps=10.0, config=TrackerConfig(min_length=1))
    assert [len(t.points) for t in kept] == [10, 1, 1, 1]
    assert [t.track_id for t in kept] == [0, 1, 2, 3]  # renumbered in order of birth


def test_missed_frames_within_max_missed_keep_the_track() -> None:
    frames: list[list[Detection]] = [[person(100 + 20 * i)] for i in range(14)]
    for i in (5, 6, 7):  # occluded: not detected
        frames[i] = []
    (track,) = track_detections(frames, SIZE, fps=10.0, config=TrackerConfig(max_missed=3))
    assert [p.frame_index for p in track.points] == [0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13]


def test_a_long_gap_ends_the_track() -> None:
    frames: list[list[Detection]] = [[person(300)] for _ in range(16)]
    for i in range(5, 10):
        frames[i] = []
    tracks = track_detections(frames, SIZE, fps=10.0, config=TrackerConfig(max_missed=3))
    assert [[p.frame_index for p in t.points] for t in tracks] == [
        [0, 1, 2, 3, 4],
        [10, 11, 12, 13, 14, 15],
    ]


def test_centre_distance_links_a_fast_mover() -> None:
    # 100 px per frame with an 80 px wide box: no overlap after the first step; the
    # constant-velocity prediction and the centre-distance fallback keep it one track.
    frames = [[person(100 + 100 * i)] for i in range(10)]
    assert len(track_detections(frames, SIZE, fps=10.0)) == 1
    off = TrackerConfig(max_center_distance=0.0, min_length=1)
    assert len(track_detections(frames, SIZE, fps=10.0, config=off)) >= 2


def test_centre_distance_fallback_on_a_size_jump() -> None:
    # The detector's box suddenly doubles (IoU ~0.25 < 0.3): the fallback links it.
    frames = [[person(300, h=200)] for _ in range(4)] + [[person(300, h=400)] for _ in range(4)]
    assert len(track_detections(frames, SIZE, fps=10.0)) == 1


def test_body_box_is_preferred_for_matching() -> None:
    # BlazePose's head box jumps around (no overlap frame to frame); the body box is steady.
    frames = [[blaze(400 + 5 * i, 400, 150, head_dx=60 * (-1) ** i)] for i in range(10)]
    tracks = track_detections(frames, SIZE, fps=10.0, config=TrackerConfig(max_center_distance=0.0))
    assert len(tracks) == 1 and len(tracks[0].points) == 10


def test_different_labels_are_never_linked() -> None:
    frames = [[person(300, label="person" if i < 5 else "car")] for i in range(10)]
    tracks = track_detections(frames, SIZE, fps=10.0)
    assert [len(t.points) for t in tracks] == [5, 5]


def test_empty_clip_and_empty_frames() -> None:
    assert track_detections([], SIZE, fps=10.0) == []
    assert track_detections([[], [], []], SIZE, fps=10.0) == []


def test_frames_must_go_forward() -> None:
    tracker = Tracker()
    tracker.update(3, [person(100)])
    with pytest.raises(ValueError, match="frame_index 3"):
        tracker.update(3, [person(100)])


def test_fps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="fps"):
        track_detections([[person(1)]], SIZE, fps=0.0)


def test_config_is_strict_and_frozen() -> None:
    cfg = TrackerConfig()
    with pytest.raises(ValidationError):
        TrackerConfig(iou_treshold=0.5)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        TrackerConfig(iou_threshold=0.0)
    with pytest.raises(ValidationError):
        TrackerConfig(max_missed=-1)
    with pytest.raises(ValidationError):
        cfg.min_length = 5  # type: ignore[misc]


def test_assign_optimal_beats_greedy_and_respects_max_cost() -> None:
    cost = np.array([[0.1, 0.2], [0.15, 0.9]])
    # Greedy takes (0,0) first and is left with 0.9 (> max_cost) for row 1.
    assert assign(cost, 0.5, optimal=False) == [(0, 0)]
    assert sorted(assign(cost, 0.5, optimal=True)) == [(0, 1), (1, 0)]
    assert assign(np.zeros((0, 3)), 0.5) == []
    assert assign(np.array([[0.8]]), 0.5) == []


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=float)
    b = np.array([[5, 0, 15, 10]], dtype=float)
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150], [0.0]])
    assert iou_matrix(a, np.zeros((0, 4))).shape == (2, 0)
