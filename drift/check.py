"""The ``prediction_drift`` rollout check: does the challenger answer unlike the champion?

It judges what the drift monitor measured for the rollout window (``WindowStats.extra``, filled
by the controller from ``DriftMonitor.rollout_drift``), on prediction features only:

- ``vs_champion``: the challenger's shadow answers against the champion's answers to the same
  requests. Inputs are identical, so any drift is the model's doing;
- ``vs_reference``: the challenger's answers in the window against its frozen reference; judged
  only when the champion's answers in the same window do *not* drift from the champion's own
  reference (if both drift, the traffic moved, which is not the challenger's fault).

``threshold`` is the share of prediction features allowed to drift (fails at or above it);
``min_samples`` (default: the rollout's ``min_requests``) is the rows needed on each side.
A failed result carries the id of the report that showed the drift.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from serving.checks import PHASES, CheckResult, WindowStats, register_check

if TYPE_CHECKING:
    from serving.rollout_spec import CheckSpec

NAME = "prediction_drift"


def _judged(entry: dict[str, Any] | None) -> bool:
    """A comparison that reached a verdict (enough rows on both sides)."""
    return entry is not None and entry.get("status") not in (None, "insufficient_data")


class PredictionDriftCheck:
    name = NAME
    phases = PHASES

    def validate(self, spec: CheckSpec) -> None:
        if not 0.0 < spec.threshold <= 1.0:
            raise ValueError(
                f"{self.name} threshold is a share of drifted features in (0, 1], "
                f"got {spec.threshold!r}"
            )

    def evaluate(self, stats: WindowStats, spec: CheckSpec, min_requests: int) -> CheckResult:
        data = stats.extra.get(self.name)
        if not data:
            return CheckResult(self.name, None, None, spec.threshold, "no drift data yet")
        judged: list[tuple[str, dict[str, Any]]] = []
        if _judged(data.get("vs_champion")):
            judged.append(("challenger vs champion (paired)", data["vs_champion"]))
        champion_moved = _judged(data.get("champion_vs_reference")) and (
            float(data["champion_vs_reference"]["drift_share"]) >= spec.threshold
        )
        if _judged(data.get("vs_reference")) and not champion_moved:
            judged.append(("challenger vs its reference", data["vs_reference"]))
        if not judged:
            detail = f"{data.get('pairs', 0)} paired requests; not enough rows for a verdict"
            if champion_moved:
                detail += "; the champion drifts from its reference too (traffic moved)"
            return CheckResult(self.name, None, None, spec.threshold, detail)
        what, worst = max(judged, key=lambda item: float(item[1]["drift_share"]))
        share = float(worst["drift_share"])
        drifted = ", ".join(worst.get("drifted_features") or []) or "none"
        return CheckResult(
            self.name,
            share < spec.threshold,
            share,
            spec.threshold,
            f"{what}: drifted {drifted} ({worst['current_rows']} rows); "
            f"report {worst['report_id']}",
            report_id=worst["report_id"],
        )


register_check(PredictionDriftCheck())
