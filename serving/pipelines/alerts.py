"""What an action becomes: ``uncertain``, an alert for human review, or an alert delivered.

One rule, shared by the ``clip`` pipeline and the operations side (jobs, streams, the review
queue), so that a confidence means the same thing everywhere:

- below ``uncertain_below`` the outcome is ``uncertain``: no alert, whatever the label;
- from there up to ``review_below``, or for a *high-risk* label at any confidence, an alert
  goes to human review (``route="review"``);
- at or above ``review_below`` (and not high-risk), the alert is delivered (``route="deliver"``).

The confidences are the action model's calibrated probabilities (temperature-scaled softmax),
so ``review_below: 0.8`` means "a human looks whenever the model is right less than about four
times in five".

:class:`Alert` is the typed value that leaves a pipeline (it crosses the replica -> ingress
boundary and goes on to the review queue): the calibrated confidence, the route and why, and the
evidence a person needs: the snapshot of the frame that triggered it with the box drawn on it.
"""

from __future__ import annotations

import base64
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from serving.schema import Strict

UNCERTAIN = "uncertain"
Route = Literal["review", "deliver"]
Reason = Literal["high_risk_label", "below_review_threshold", "confident"]


class AlertRule(Strict):
    """The thresholds of the rule above; ``labels`` are the actions that alert at all."""

    labels: list[str] = Field(min_length=1, description="Action labels that raise an alert.")
    uncertain_below: float = Field(
        default=0.5, ge=0, le=1, description="Below this confidence the outcome is 'uncertain'."
    )
    review_below: float = Field(
        default=0.8, ge=0, le=1, description="Alerts below this confidence go to human review."
    )
    high_risk: list[str] = Field(
        default_factory=list, description="Labels whose alerts always go to human review."
    )

    @model_validator(mode="after")
    def _ordered(self) -> AlertRule:
        if self.review_below < self.uncertain_below:
            raise ValueError(
                f"review_below {self.review_below} is below uncertain_below "
                f"{self.uncertain_below}: no confidence could go to review"
            )
        unknown = sorted(set(self.high_risk) - set(self.labels))
        if unknown:
            raise ValueError(f"high_risk labels {unknown} are not among labels {self.labels}")
        return self

    def outcome(self, label: str, confidence: float) -> str:
        """The label, or ``uncertain`` below ``uncertain_below``."""
        return UNCERTAIN if confidence < self.uncertain_below else label

    def route(self, label: str, confidence: float) -> tuple[Route, Reason] | None:
        """Where an alert for ``label`` at ``confidence`` goes; None when none is raised."""
        if label not in self.labels or self.outcome(label, confidence) == UNCERTAIN:
            return None
        if label in self.high_risk:
            return "review", "high_risk_label"
        if confidence < self.review_below:
            return "review", "below_review_threshold"
        return "deliver", "confident"


class Alert(Strict):
    """One alert about one tracked person in one clip."""

    track_id: int
    action: str
    confidence: float = Field(ge=0, le=1, description="Calibrated probability of the action.")
    route: Route
    reason: Reason
    frame_index: int = Field(ge=0, description="The frame that triggered the alert.")
    box: tuple[float, float, float, float] = Field(
        description="The person on that frame: x1, y1, x2, y2 in frame pixels."
    )
    snapshot_jpeg_base64: str = Field(
        description="That frame (downscaled to the snapshot size) with the box drawn on it."
    )
    snapshot_box: tuple[float, float, float, float] = Field(
        description="The box in snapshot pixels."
    )


def snapshot_with_box(
    frame: np.ndarray, box: tuple[float, float, float, float], max_side: int, quality: int
) -> tuple[str, tuple[float, float, float, float]]:
    """The frame as a base64 JPEG no larger than ``max_side``, the box drawn on it in red;
    returns (jpeg, box in snapshot pixels)."""
    import cv2

    h, w = frame.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    image = frame
    if scale < 1:
        image = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    sh, sw = image.shape[:2]
    x1, y1, x2, y2 = (
        min(max(v * scale, 0.0), lim) for v, lim in zip(box, (sw, sh, sw, sh), strict=True)
    )
    image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # a copy: the clip's frame stays as it was
    thickness = max(2, round(max(sh, sw) / 200))  # 1 px is lost to JPEG chroma
    cv2.rectangle(image, (int(x1), int(y1)), (int(x2), int(y2)), (0, 0, 255), thickness)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - imencode of a uint8 image does not fail
        raise RuntimeError("JPEG encoding failed")
    shown = (round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1))
    return base64.b64encode(buf.tobytes()).decode("ascii"), shown
