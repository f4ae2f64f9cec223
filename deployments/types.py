"""Plain result types shared by the model code, the deployments and the pipelines.

Dataclasses (not pydantic) so they cross Ray process boundaries cheaply; ``to_dict`` gives the
JSON shape the HTTP API returns. Coordinates are pixels of the *original* image, (x1, y1, x2, y2).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Keypoint:
    name: str
    x: float
    y: float
    score: float | None = None


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]
    score: float
    label: str = "person"
    keypoints: tuple[Keypoint, ...] = ()
    # Full-body region where the detector gives one (BlazePose: circle around mid-hip).
    body_box: tuple[float, float, float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TextLine:
    text: str
    confidence: float
    # Four corner points, clockwise from top-left, in original-image pixels.
    polygon: tuple[tuple[float, float], ...]
    box: tuple[float, float, float, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ActionPrediction:
    label: str
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrackAction:
    """What a pipeline says about one track: the model's prediction, and ``uncertain`` when its
    confidence is below the pipeline's ``uncertain_below`` (None: the prediction's label)."""

    track_id: int
    prediction: ActionPrediction
    outcome: str | None = None


@dataclass(frozen=True)
class TrackPoint:
    frame_index: int
    detection: Detection
    # True for a box filled in between two detector sightings (strided detection, see
    # serving/pipelines/stride.py): not seen by the detector, so never a classifier input.
    interpolated: bool = False


@dataclass(frozen=True)
class Track:
    """One tracked person across frames of a clip (built by serving/tracker.py)."""

    track_id: int
    points: tuple[TrackPoint, ...]
    frame_size: tuple[int, int]  # (width, height) of the clip's frames
    fps: float = 10.0

    def observed(self) -> Track:
        """The track on the frames the detector saw (without interpolated points)."""
        if not any(p.interpolated for p in self.points):
            return self
        points = tuple(p for p in self.points if not p.interpolated)
        return Track(self.track_id, points, self.frame_size, self.fps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id,
            "first_frame": self.points[0].frame_index if self.points else None,
            "last_frame": self.points[-1].frame_index if self.points else None,
            "length": len(self.points),
            "boxes": [list(p.detection.box) for p in self.points],
        }
