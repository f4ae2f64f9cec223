"""Multi-object tracker: per-frame detections of a clip -> tracks with stable ids.

Plain Python (no Ray), in the spirit of SORT without the Kalman filter:

1. every live track predicts its box in the new frame from its last box and a smoothed
   centre velocity (so two people who cross keep their ids: at the crossing the boxes overlap,
   but the *predicted* boxes still point each way);
2. detections are matched to predictions by IoU (optimal assignment when scipy is available,
   greedy otherwise), pairs under ``iou_threshold`` refused;
3. what is left is matched by centre distance relative to box size (a fast mover whose box no
   longer overlaps its prediction, or a detector whose box size jumps);
4. unmatched detections start tracks; a track unseen for more than ``max_missed`` frames ends;
   tracks with fewer than ``min_length`` detections are dropped at the end.

Strided detection (``detect_frames`` with ``stride: k``, see :mod:`serving.pipelines.stride`)
feeds only every k-th frame, under its original frame index. Velocities are per *clip* frame
(displacement / frame-index gap), so predictions stay right. ``max_missed`` stays in clip
frames, but the sampling gap itself is not a miss: a track ends when it has been unseen for
more than ``max_missed + stride - 1`` frames, i.e. after missing more than ``max_missed //
stride`` sampled frames (stride 1: exactly the unstrided rule). ``min_length`` counts
detections, i.e. sampled frames: evidence, not duration (with stride k a kept track spans at
least ``(min_length - 1) * k + 1`` frames).

Boxes are ``body_box`` when the detector gives one (BlazePose's ``box`` is only the head, which
is small and jumpy), else ``box``. Only detections of the same ``label`` are linked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from deployments.types import Detection, Track, TrackPoint

# A velocity estimate that trusts the newest displacement half and the history half.
_VELOCITY_SMOOTHING = 0.5


class TrackerConfig(BaseModel):
    """Parameters of :func:`track_detections` (the ``track`` op's params in a pipeline)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    iou_threshold: float = Field(
        default=0.3,
        gt=0.0,
        le=1.0,
        description="Least IoU between a track's predicted box and a detection to link them.",
    )
    max_center_distance: float = Field(
        default=1.0,
        ge=0.0,
        description="Fallback link: most centre distance, in units of the boxes' mean side "
        "(sqrt of area); 0 disables the fallback.",
    )
    max_missed: int = Field(
        default=5,
        ge=0,
        le=1000,
        description="Frames a track may go unseen (occlusion, missed detection) before it ends; "
        "with strided detection the frames between samples do not count.",
    )
    min_length: int = Field(
        default=3,
        ge=1,
        description="Tracks with fewer detections than this are dropped (with strided "
        "detection: detections on sampled frames).",
    )


def match_box(det: Detection) -> tuple[float, float, float, float]:
    return det.body_box if det.body_box is not None else det.box


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a [N, 4]`` with every box in ``b [M, 4]`` (x1, y1, x2, y2)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def assign(cost: np.ndarray, max_cost: float, *, optimal: bool = True) -> list[tuple[int, int]]:
    """Pairs (row, col) of least total ``cost``, each under or at ``max_cost``.

    Optimal (Hungarian, scipy) when asked and scipy is importable, else greedy cheapest-first;
    ties are broken by index so the result never depends on dict or hash order.
    """
    if cost.size == 0:
        return []
    if optimal:
        try:
            from scipy.optimize import linear_sum_assignment
        except ImportError:  # scipy is optional; greedy is good enough for a few people
            optimal = False
    if optimal:
        # Forbidden pairs get a cost above any allowed sum, so they are chosen only when
        # nothing else is possible, and are filtered out below.
        big = max_cost * (cost.shape[0] + cost.shape[1] + 1) + 1.0
        rows, cols = linear_sum_assignment(np.where(cost <= max_cost, cost, big))
        return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] <= max_cost]
    pairs: list[tuple[int, int]] = []
    used_r: set[int] = set()
    used_c: set[int] = set()
    flat = np.argsort(cost, axis=None, kind="stable")
    for r, c in zip(*np.unravel_index(flat, cost.shape), strict=True):
        if cost[r, c] > max_cost:
            break
        if r in used_r or c in used_c:
            continue
        pairs.append((int(r), int(c)))
        used_r.add(int(r))
        used_c.add(int(c))
    return sorted(pairs)


@dataclass(eq=False)  # identity semantics: two tracks are never "equal"
class _Live:
    track_id: int
    label: str
    box: np.ndarray  # last matched box
    last_frame: int
    points: list[TrackPoint] = field(default_factory=list)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # centre px / frame

    def predicted(self, frame_index: int) -> np.ndarray:
        shift = self.velocity * (frame_index - self.last_frame)
        return self.box + np.concatenate([shift, shift])

    def add(self, frame_index: int, det: Detection, box: np.ndarray) -> None:
        if self.points:
            step = (_centre(box) - _centre(self.box)) / max(frame_index - self.last_frame, 1)
            if len(self.points) == 1:
                self.velocity = step
            else:
                a = _VELOCITY_SMOOTHING
                self.velocity = a * step + (1 - a) * self.velocity
        self.points.append(TrackPoint(frame_index, det))
        self.box = box
        self.last_frame = frame_index


def _centre(box: np.ndarray) -> np.ndarray:
    return (box[..., :2] + box[..., 2:]) / 2


def _side(box: np.ndarray) -> np.ndarray:
    wh = np.clip(box[..., 2:] - box[..., :2], 1e-6, None)
    return np.sqrt(wh[..., 0] * wh[..., 1])


class Tracker:
    """Streaming form: call :meth:`update` for every frame in order, then :meth:`tracks`.

    ``stride``: the detector saw only every ``stride``-th frame, so that many frames between
    two updates are not a miss (see the module docstring).
    """

    def __init__(
        self, config: TrackerConfig | None = None, *, optimal: bool = True, stride: int = 1
    ) -> None:
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.config = config or TrackerConfig()
        self._optimal = optimal
        self._tolerance = self.config.max_missed + stride - 1
        self._live: list[_Live] = []
        self._ended: list[_Live] = []
        self._next_id = 0
        self._last_frame: int | None = None

    def update(self, frame_index: int, detections: Sequence[Detection]) -> None:
        if self._last_frame is not None and frame_index <= self._last_frame:
            raise ValueError(
                f"frame_index {frame_index} is not after the previous one ({self._last_frame})"
            )
        self._last_frame = frame_index
        cfg = self.config
        # End the tracks that have been unseen too long before trying to match them.
        still = [t for t in self._live if frame_index - t.last_frame - 1 <= self._tolerance]
        self._ended += [t for t in self._live if t not in still]
        self._live = still

        boxes = np.array([match_box(d) for d in detections], dtype=np.float64).reshape(-1, 4)
        pred = np.array([t.predicted(frame_index) for t in self._live]).reshape(-1, 4)
        same_label = np.array(
            [[t.label == d.label for d in detections] for t in self._live], dtype=bool
        ).reshape(len(self._live), len(detections))

        iou = np.where(same_label, iou_matrix(pred, boxes), 0.0)
        pairs = assign(1.0 - iou, 1.0 - cfg.iou_threshold, optimal=self._optimal)
        free_t = [i for i in range(len(self._live)) if i not in {p[0] for p in pairs}]
        free_d = [j for j in range(len(detections)) if j not in {p[1] for p in pairs}]
        if free_t and free_d and cfg.max_center_distance > 0:
            pt, bd = pred[free_t], boxes[free_d]
            dist = np.linalg.norm(_centre(pt)[:, None, :] - _centre(bd)[None, :, :], axis=2)
            size = (_side(pt)[:, None] + _side(bd)[None, :]) / 2
            rel = np.where(same_label[np.ix_(free_t, free_d)], dist / size, np.inf)
            pairs += [
                (free_t[r], free_d[c])
                for r, c in assign(rel, cfg.max_center_distance, optimal=self._optimal)
            ]

        for ti, dj in pairs:
            self._live[ti].add(frame_index, detections[dj], boxes[dj])
        matched = {dj for _, dj in pairs}
        for dj, det in enumerate(detections):
            if dj not in matched:
                track = _Live(self._next_id, det.label, boxes[dj], frame_index)
                track.add(frame_index, det, boxes[dj])
                self._live.append(track)
                self._next_id += 1

    def tracks(self, frame_size: tuple[int, int], fps: float) -> list[Track]:
        """Every track long enough, in order of birth, renumbered 0, 1, 2 ..."""
        done = sorted(self._ended + self._live, key=lambda t: t.track_id)
        kept = [t for t in done if len(t.points) >= self.config.min_length]
        return [
            Track(track_id=i, points=tuple(t.points), frame_size=frame_size, fps=fps)
            for i, t in enumerate(kept)
        ]


def track_detections(
    frames: Sequence[Sequence[Detection]],
    frame_size: tuple[int, int],
    fps: float,
    config: TrackerConfig | None = None,
    *,
    indices: Sequence[int] | None = None,
) -> list[Track]:
    """Tracks of a clip whose frame ``i`` has detections ``frames[i]``; or, given ``indices``
    (strided detection), whose frame ``indices[i]`` has ``frames[i]``: the points then carry
    those frame indices and the largest gap between them is the tracker's stride."""
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    if indices is None:
        indices = range(len(frames))
    if len(indices) != len(frames):
        raise ValueError(f"{len(indices)} indices for {len(frames)} frames")
    gaps = [b - a for a, b in pairwise(indices)]
    tracker = Tracker(config, stride=max([1, *gaps]))
    for index, detections in zip(indices, frames, strict=True):
        tracker.update(index, detections)
    return tracker.tracks((int(frame_size[0]), int(frame_size[1])), float(fps))
