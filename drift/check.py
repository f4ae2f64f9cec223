"""The ``prediction_drift`` rollout check: does the challenger answer unlike the champion?

It judges what the drift monitor measured for the rollout window (a
:class:`~serving.rollouts.evidence.DriftEvidence` in ``WindowStats.extra``, filled by the
controller from ``DriftMonitor.rollout_drift``), on prediction features only:

- ``vs_champion``: the challenger's shadow answers against the champion's answers to the same
  requests. Inputs are identical, so any drift is the model's doing;
- ``vs_reference``: the challenger's answers in the window against its frozen reference; judged
  only when the champion's answers in the same window do *not* drift from the champion's own
  reference (if both drift, the traffic moved, which is not the challenger's fault).

``threshold`` is the share of prediction features allowed to drift (fails at or above it);
``min_samples`` (default: the rollout's ``min_requests``) is the rows needed on each side.
A failed result carries the id of the report that showed the drift.

Importing this module registers nothing: app assembly hands ``PredictionDriftCheck()`` to the
rollout controller, which registers it (``serving.rollouts.checks.register_check``).
"""

from __future__ import annotations

from serving.rollouts.checks import PHASES, CheckResult, CheckSpec, WindowStats
from serving.rollouts.evidence import PREDICTION_DRIFT, DriftComparison, DriftEvidence

NAME = PREDICTION_DRIFT


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
        if not isinstance(data, DriftEvidence):
            return CheckResult(self.name, None, None, spec.threshold, "no drift data yet")
        paired, mine, baseline = data.vs_champion, data.vs_reference, data.champion_vs_reference
        judged: list[tuple[str, DriftComparison]] = []
        if paired is not None and paired.judged:
            judged.append(("challenger vs champion (paired)", paired))
        champion_moved = (
            baseline is not None and baseline.judged and baseline.drift_share >= spec.threshold
        )
        if mine is not None and mine.judged and not champion_moved:
            judged.append(("challenger vs its reference", mine))
        if not judged:
            detail = f"{data.pairs} paired requests; not enough rows for a verdict"
            if champion_moved:
                detail += "; the champion drifts from its reference too (traffic moved)"
            return CheckResult(self.name, None, None, spec.threshold, detail)
        what, worst = max(judged, key=lambda item: item[1].drift_share)
        share = float(worst.drift_share)
        drifted = ", ".join(worst.drifted_features) or "none"
        return CheckResult(
            self.name,
            share < spec.threshold,
            share,
            spec.threshold,
            f"{what}: drifted {drifted} ({worst.current_rows} rows); report {worst.report_id}",
            report_id=worst.report_id,
        )
