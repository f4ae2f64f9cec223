"""What the drift monitor measured for one rollout window: the ``prediction_drift`` evidence.

The controller asks the drift monitor (another actor) for it once per analysis window and puts
it in ``WindowStats.extra["prediction_drift"]``; the check in ``drift/check.py`` judges it. It
crosses an actor boundary, so it is a typed value. Its fields are what the monitor's
``rollout_drift`` computes: one :class:`DriftComparison` (a summary of one stored drift
report) per comparison that could be made, and how many requests were paired.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PREDICTION_DRIFT = "prediction_drift"  # the check that judges this evidence (drift/check.py)
DriftStatus = Literal["no_drift", "drift", "insufficient_data", "no_reference"]


class DriftComparison(BaseModel):
    """One drift report, summarised: how many prediction features drifted, on how many rows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    report_id: str = Field(description="The stored report (HTML/JSON) behind this comparison.")
    status: DriftStatus
    drift_share: float = Field(description="Share of compared features that drifted, in [0, 1].")
    drifted_features: tuple[str, ...] = ()
    drifted_groups: tuple[str, ...] = Field(
        default=(), description="Which part of the row moved: input, prediction, embedding."
    )
    reference_rows: int = Field(ge=0)
    current_rows: int = Field(ge=0)
    against: str = Field(default="", description="What the window was compared against.")

    @property
    def judged(self) -> bool:
        """Whether it reached a verdict (enough rows on both sides, and a reference)."""
        return self.status not in ("insufficient_data", "no_reference")


class DriftEvidence(BaseModel):
    """The comparisons of one rollout window; a comparison that could not be made is None."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pending: bool = Field(
        default=False,
        description="The monitor is still measuring this window: no comparison yet, and the "
        "window stays open until it has one (up to the rollout's progress deadline).",
    )
    pairs: int = Field(default=0, ge=0, description="Shadow requests paired with the champion.")
    vs_champion: DriftComparison | None = Field(
        default=None, description="Challenger's shadow answers vs the champion's, same requests."
    )
    vs_reference: DriftComparison | None = Field(
        default=None, description="Challenger's answers in the window vs its own reference."
    )
    champion_vs_reference: DriftComparison | None = Field(
        default=None, description="Champion's answers in the window vs its own reference."
    )


class EvidencePending(TimeoutError):
    """Raised by a drift source while the monitor is still measuring a window."""


# (model, champion, challenger, window start, min rows) -> what the drift monitor measured,
# or None when there is no monitor; EvidencePending while it has no answer for that window yet.
# App assembly hands the controller a picklable module-level function; the controller never
# imports the drift package.
DriftSource = Callable[[str, int, int, float, int], DriftEvidence | None]
# One call's arguments: what the controller asks for a rollout window.
DriftAsk = tuple[str, int, int, float, int]
