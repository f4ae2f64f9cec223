"""Strided detection in the ``clip`` pipeline: stride 3 against stride 1 on a real-derived clip.

The ops run through the executor with the real YOLO11n-pose detector (detector v3, built once
per session from the cached wheel, ~10-15 s) and the real ``action`` v1 (built once per session,
~15 s, shared with tests/unit/deployments/models/test_action_model.py), both called in process.
The clip is :func:`load_tests.media.clip_frames`: two people crossing a real photo, 25 fps.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deployments.loader import load_model
from deployments.types import Detection, Keypoint, Track, TrackPoint
from serving.config import load_config
from serving.pipelines.executor import PipelineRun, execute
from serving.pipelines.ops import OPS, Clip, to_json
from serving.pipelines.stride import (
    FrameDetections,
    interpolate_detection,
    interpolate_track,
    sample_indices,
)
from serving.pipelines.tracker import TrackerConfig, iou_matrix, track_detections
from tests.unit.serving.pipelines.clip_specs import clip_spec

CLIP = load_config().pipelines["clip"]
FPS = 25.0
SECONDS = 10.0  # the whole clip (the tolerance is stated for a 10 s clip)
BATCH = 16  # the detector deployment's max_batch_size: bounds the memory of one call


# --- real models, in process ---------------------------------------------------------------


@pytest.fixture(scope="session")
def action_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model_registry.references.action_training import build_action_v1

    # Same path as tests/unit/deployments/models/test_action_model.py: built once a session.
    out = tmp_path_factory.getbasetemp() / "action-v1-seed0"
    if not (out / "manifest.yaml").is_file():
        build_action_v1(out, seed=0)
    return out


class InProcess:
    """A ModelCaller over the real models' ``predict``, counting the items each model got."""

    def __init__(self, models: dict[str, Any]) -> None:
        self.models = models
        self.items: dict[str, int] = dict.fromkeys(models, 0)

    async def __call__(self, model: str, items: list[Any]) -> list[Any]:
        self.items[model] += len(items)
        out: list[Any] = []
        for i in range(0, len(items), BATCH):
            out += self.models[model].predict(items[i : i + BATCH])
        return out


@pytest.fixture(scope="module")
def runs(yolo_dir: Path, action_dir: Path) -> dict[int, tuple[PipelineRun, InProcess]]:
    from load_tests.media import clip_frames

    clip = Clip(frames=clip_frames(seconds=SECONDS, fps=FPS), fps=FPS)
    models = {"detector": load_model(yolo_dir), "action": load_model(action_dir)}
    out = {}
    for stride in (1, 3):
        caller = InProcess(models)
        run = asyncio.run(execute(clip_spec(stride), clip, caller))
        out[stride] = (run, caller)
    return out


def boxes_by_frame(track: dict[str, Any]) -> dict[int, np.ndarray]:
    first = track["first_frame"]
    return {first + i: np.array(b) for i, b in enumerate(track["boxes"])}


def mean_iou(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> tuple[float, list[float]]:
    common = sorted(set(a) & set(b))
    ious = [float(iou_matrix(a[f][None], b[f][None])[0, 0]) for f in common]
    return (float(np.mean(ious)) if ious else 0.0), ious


# --- behaviour on the real clip ------------------------------------------------------------


def test_stride_3_sends_a_third_of_the_frames(runs) -> None:
    n = round(SECONDS * FPS)
    assert runs[1][1].items["detector"] == n
    assert runs[3][1].items["detector"] == len(sample_indices(n, 3)) == n // 3 + 1
    sampled = runs[3][0].outputs["detect"]
    assert isinstance(sampled, FrameDetections) and sampled.indices[-1] == n - 1


def test_stride_3_tracks_match_stride_1(runs) -> None:
    full = runs[1][0].result["tracks"]
    strided = runs[3][0].result["tracks"]
    assert len(full) == len(strided) >= 2, (len(full), len(strided))
    unused = list(range(len(strided)))
    for track in full:
        a = boxes_by_frame(track)
        best = max(unused, key=lambda j: mean_iou(a, boxes_by_frame(strided[j]))[0])
        unused.remove(best)
        _, ious = mean_iou(a, boxes_by_frame(strided[best]))
        # A strided track can start and end up to a stride later / earlier (more where the
        # detector missed the person on the sampled frame next to an end).
        assert len(ious) >= 0.8 * len(a), (track["first_frame"], track["last_frame"])
        good = sum(v >= 0.7 for v in ious) / len(ious)
        assert good >= 0.9, (track["track_id"], good, min(ious))
        # Every frame from the first to the last has a box (sampled, interpolated, or missing
        # only where the detector missed a sampled frame, as in an unstrided run).
        st = strided[best]
        assert st["length"] >= 0.9 * (st["last_frame"] - st["first_frame"] + 1)


def test_stride_3_raises_the_same_alert_labels_from_sampled_frames(runs) -> None:
    full, strided = runs[1][0], runs[3][0]
    # On the whole 10 s clip the alerts are the same, label for label. (On its first 4 s they
    # are not: the track that starts at the crossing is only a few frames long there, and the
    # action model labels that short track differently from its sampled frames.)
    labels = sorted(a["action"] for a in full.result["alerts"])
    assert labels and labels == sorted(a["action"] for a in strided.result["alerts"])
    # The walker who crosses the whole clip gets the same action either way.
    whole = [
        [a for a in run.result["actions"] if a["track_id"] == t["track_id"]]
        for run in (full, strided)
        for t in run.result["tracks"]
        if (t["first_frame"], t["last_frame"]) == (0, round(SECONDS * FPS) - 1)
    ]
    assert len(whole) == 2 and whole[0][0]["label"] == whole[1][0]["label"]
    sampled = set(strided.outputs["detect"].indices)
    tracks = {t.track_id: t for t in strided.outputs["tracks"]}
    for alert in strided.result["alerts"]:
        assert alert["frame_index"] in sampled
        (point,) = [
            p for p in tracks[alert["track_id"]].points if p.frame_index == alert["frame_index"]
        ]
        assert not point.interpolated


def test_the_classifier_sees_only_sampled_frames(runs) -> None:
    run = runs[3][0]
    sampled = set(run.outputs["detect"].indices)
    for track in run.outputs["tracks"]:
        observed = track.observed()
        assert {p.frame_index for p in observed.points} <= sampled
        assert observed.fps == FPS  # original indices and fps: the features' time is right
        assert any(p.interpolated for p in track.points)


def test_stride_1_is_exactly_the_unstrided_pipeline(runs) -> None:
    run = runs[1][0]
    dets = run.outputs["detect"]
    assert dets.indices == tuple(range(len(dets))) == tuple(range(dets.total))
    # Today's track op: the tracker over the plain per-frame list, nothing interpolated.
    today = track_detections(list(dets), frame_size=(640, 272), fps=FPS)
    assert run.outputs["tracks"] == today
    assert not any(p.interpolated for t in today for p in t.points)
    # The rendering is today's list of per-frame lists.
    plain = [[d for d in frame] for frame in dets]
    assert to_json("frame_detections", dets) == to_json("frame_detections", plain)


# --- pure ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "total,stride,want",
    [
        (10, 3, (0, 3, 6, 9)),
        (11, 3, (0, 3, 6, 9, 10)),
        (5, 1, (0, 1, 2, 3, 4)),
        (4, 10, (0, 3)),
        (1, 3, (0,)),
        (0, 3, ()),
    ],
)
def test_sampled_indices_include_the_last_frame(total: int, stride: int, want: tuple) -> None:
    assert sample_indices(total, stride) == want


def test_stride_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="stride"):
        sample_indices(10, 0)
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        OPS["detect_frames"].validate_params({"stride": 0})
    assert OPS["detect_frames"].validate_params({}).stride == 1  # type: ignore[attr-defined]


def det(x: float, score: float = 0.9, kx: float | None = None) -> Detection:
    kps = () if kx is None else (Keypoint("nose", kx, 10.0, 0.5),)
    return Detection(
        box=(x, 0.0, x + 30, 60.0), score=score, keypoints=kps, body_box=(x, 5.0, x + 30, 65.0)
    )


def test_interpolation_between_two_sampled_boxes_is_linear() -> None:
    track = Track(0, (TrackPoint(0, det(0, 0.9, 0)), TrackPoint(3, det(30, 0.6, 60))), (640, 480))
    out = interpolate_track(track, sampled=(0, 3))
    assert [p.frame_index for p in out.points] == [0, 1, 2, 3]
    assert [p.interpolated for p in out.points] == [False, True, True, False]
    assert [p.detection.box[0] for p in out.points] == pytest.approx([0, 10, 20, 30])
    assert [p.detection.box[2] for p in out.points] == pytest.approx([30, 40, 50, 60])
    mid = out.points[1].detection
    assert mid.body_box == pytest.approx((10, 5, 40, 65))
    assert mid.score == pytest.approx(0.8)
    assert mid.keypoints[0].x == pytest.approx(20)
    assert out.observed() == track
    assert out.to_dict()["length"] == 4 and out.to_dict()["boxes"][2][0] == pytest.approx(20)


def test_a_sampled_frame_the_detector_missed_stays_missing() -> None:
    track = Track(0, (TrackPoint(0, det(0)), TrackPoint(6, det(60))), (640, 480))
    out = interpolate_track(track, sampled=(0, 3, 6))
    assert [p.frame_index for p in out.points] == [0, 1, 2, 4, 5, 6]
    # Keypoints are interpolated only when both ends have the same ones.
    assert interpolate_detection(det(0, kx=1), det(6), 0.5).keypoints == ()


def test_stride_1_interpolates_nothing() -> None:
    track = Track(0, (TrackPoint(0, det(0)), TrackPoint(2, det(20))), (640, 480))
    assert interpolate_track(track, sampled=range(3)) is track


def test_frame_detections_render_null_for_unsampled_frames() -> None:
    fd = FrameDetections((0, 2), ([det(0)], []), 3)
    rendered = to_json("frame_detections", fd)
    assert rendered[1] is None and rendered[2] == [] and rendered[0][0]["box"] == [0, 0, 30, 60]
    # As a sequence it is the sampled frames (what drift capture and shadow agreement read).
    assert len(fd) == 2 and list(fd) == [[det(0)], []]
    with pytest.raises(ValueError, match="increase"):
        FrameDetections((2, 0), ([], []), 3)


def walker(frames: range, missed: set[int] = frozenset()) -> tuple[list, list[int]]:
    """A person walking 2 px a frame, detected on ``frames`` except ``missed``."""
    indices = list(frames)
    return [[] if f in missed else [det(100 + 2 * f)] for f in indices], indices


def test_max_missed_counts_clip_frames_beyond_the_sampling_gap() -> None:
    cfg = TrackerConfig(max_missed=5, min_length=1)
    # Stride 3: one missed sample (5 frames unseen after the gap) keeps the id; two end it.
    per, idx = walker(range(0, 30, 3), missed={9})
    assert len(track_detections(per, (640, 480), 25.0, cfg, indices=idx)) == 1
    per, idx = walker(range(0, 30, 3), missed={9, 12})
    assert len(track_detections(per, (640, 480), 25.0, cfg, indices=idx)) == 2
    # A stride longer than max_missed never ends a track that is seen on every sample.
    per, idx = walker(range(0, 70, 7))
    (track,) = track_detections(per, (640, 480), 25.0, cfg, indices=idx)
    assert [p.frame_index for p in track.points] == idx
