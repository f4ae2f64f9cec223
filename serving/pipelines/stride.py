"""Strided detection for clips: which frames the detector sees, and boxes for the others.

With ``stride: k`` on ``detect_frames`` the detector runs on frames 0, k, 2k, ... and the last
frame (so the end of the clip is covered); :class:`FrameDetections` says which. The tracker and
the action classifier work on those *sampled* frames only (their frame indices stay the clip's,
so the classifier's time spacing, frame index / fps, is right). The tracks a pipeline outputs
are then filled in by :func:`interpolate_track`: every frame the detector did *not* see between
two sightings gets a linearly interpolated box, marked ``TrackPoint.interpolated``. A sampled
frame where the person was missed stays missing, as it would in an unstrided run; with stride 1
nothing is interpolated and the tracks are exactly the unstrided ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import overload

from deployments.types import Detection, Keypoint, Track, TrackPoint

Box = tuple[float, float, float, float]


def sample_indices(total: int, stride: int) -> tuple[int, ...]:
    """Frames 0, stride, 2*stride, ... of a ``total``-frame clip, and always its last frame."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if total <= 0:
        return ()
    picked = list(range(0, total, stride))
    if picked[-1] != total - 1:
        picked.append(total - 1)
    return tuple(picked)


@dataclass(frozen=True)
class FrameDetections(Sequence[list[Detection]]):
    """The ``frame_detections`` kind: detections of the sampled frames of a ``total``-frame clip.

    ``detections[i]`` are the detections of frame ``indices[i]``. As a sequence it is the
    per-sampled-frame lists (what drift capture and shadow agreement iterate over);
    :meth:`per_frame` spreads them over the whole clip with ``None`` for unsampled frames.
    """

    indices: tuple[int, ...]
    detections: tuple[list[Detection], ...]
    total: int

    def __post_init__(self) -> None:
        if len(self.indices) != len(self.detections):
            raise ValueError(
                f"{len(self.indices)} indices but {len(self.detections)} lists of detections"
            )
        if any(b <= a for a, b in pairwise(self.indices)):
            raise ValueError(f"indices must increase: {self.indices}")
        if self.indices and not (0 <= self.indices[0] and self.indices[-1] < self.total):
            raise ValueError(f"indices {self.indices} outside a {self.total}-frame clip")

    @classmethod
    def dense(cls, per_frame: Iterable[Sequence[Detection]]) -> FrameDetections:
        """Every frame sampled (stride 1): the form of a plain per-frame list."""
        dets = tuple(list(d) for d in per_frame)
        return cls(tuple(range(len(dets))), dets, len(dets))

    def per_frame(self) -> list[list[Detection] | None]:
        out: list[list[Detection] | None] = [None] * self.total
        for index, dets in zip(self.indices, self.detections, strict=True):
            out[index] = dets
        return out

    def __len__(self) -> int:
        return len(self.detections)

    @overload
    def __getitem__(self, i: int) -> list[Detection]: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[list[Detection]]: ...
    def __getitem__(self, i: int | slice) -> list[Detection] | Sequence[list[Detection]]:
        return self.detections[i]


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def _lerp_box(a: Box, b: Box, t: float) -> Box:
    return (_lerp(a[0], b[0], t), _lerp(a[1], b[1], t), _lerp(a[2], b[2], t), _lerp(a[3], b[3], t))


def interpolate_detection(a: Detection, b: Detection, t: float) -> Detection:
    """The detection a fraction ``t`` of the way from ``a`` to ``b``: boxes, score and keypoints
    (when both carry the same ones, in the same order; else none) linearly interpolated."""
    body = None
    if a.body_box is not None and b.body_box is not None:
        body = _lerp_box(a.body_box, b.body_box, t)
    keypoints: tuple[Keypoint, ...] = ()
    if a.keypoints and [k.name for k in a.keypoints] == [k.name for k in b.keypoints]:
        keypoints = tuple(
            Keypoint(
                ka.name,
                _lerp(ka.x, kb.x, t),
                _lerp(ka.y, kb.y, t),
                None if ka.score is None or kb.score is None else _lerp(ka.score, kb.score, t),
            )
            for ka, kb in zip(a.keypoints, b.keypoints, strict=True)
        )
    return Detection(
        box=_lerp_box(a.box, b.box, t),
        score=_lerp(a.score, b.score, t),
        label=a.label,
        keypoints=keypoints,
        body_box=body,
    )


def interpolate_track(track: Track, sampled: Iterable[int]) -> Track:
    """``track`` (its points on sampled frames) with an interpolated point on every frame
    between two of its points that is not in ``sampled`` (the detector never saw it)."""
    seen = set(sampled)
    points: list[TrackPoint] = []
    for here, there in pairwise(track.points):
        points.append(here)
        gap = there.frame_index - here.frame_index
        for f in range(here.frame_index + 1, there.frame_index):
            if f not in seen:
                det = interpolate_detection(
                    here.detection, there.detection, (f - here.frame_index) / gap
                )
                points.append(TrackPoint(f, det, interpolated=True))
    points += track.points[-1:]
    if len(points) == len(track.points):
        return track
    return Track(track.track_id, tuple(points), track.frame_size, track.fps)
