"""The ``prediction_drift`` rollout check: does the challenger answer unlike the champion?

It judges what the drift monitor measured for the rollout window (a
:class:`~serving.rollouts.evidence.DriftEvidence` in ``WindowStats.extra``, filled by the
controller from ``DriftMonitor.rollout_drift``), on prediction features only:

- ``vs_champion``: the challenger's shadow answers against the champion's answers to the same
  requests. Inputs are identical, so any drift is the model's doing;
- ``vs_reference``: the challenger's answers in the window against its frozen reference; judged
  only when the champion's answers in the same window do *not* drift from the champion's own
  reference (if both drift, the traffic moved, which is not the challenger's fault). In a
  window with mirrored (shadow) requests it can fail the window but never pass it: only the
  pairs compare the challenger with the champion, so until they are captured (a loaded box's
  capture lags) the window has no verdict.

``threshold`` is the share of prediction features allowed to drift (fails at or above it);
``min_samples`` (default: the rollout's ``min_requests``) is the rows needed on each side.
A failed result carries the id of the report that showed the drift.

``sequential`` (default): each analysis window with a verdict counts once, at its close (the
report of its rows, disjoint from every other window's), as "failed" or not, and a Wald SPRT
over those windows decides (``sequential.windows_sprt``): H0, a window fails with the reports'
false-alarm rate (:data:`WINDOW_FALSE_ALARM`: two comparisons, each at the drift statistics'
family rate of 1%); H1, a challenger whose answers changed fails :data:`DRIFTED_WINDOW_RATE`
of its windows. At alpha = beta = 0.02 two clean windows pass and two failed windows fail
(one failed window then one clean one leaves it undecided: the rollout holds its step).
``window``: this window's report alone decides, as before.

Importing this module registers nothing: app assembly hands ``PredictionDriftCheck()`` to the
rollout controller, which registers it (``serving.rollouts.checks.register_check``).
"""

from __future__ import annotations

from serving.rollouts.checks import (
    PHASES,
    SEQUENTIAL,
    WINDOW,
    CheckResult,
    CheckSpec,
    WindowStats,
)
from serving.rollouts.evidence import PREDICTION_DRIFT, DriftComparison, DriftEvidence
from serving.rollouts.sequential import windows_sprt

NAME = PREDICTION_DRIFT
WINDOW_FALSE_ALARM = 0.02
DRIFTED_WINDOW_RATE = 0.9


class PredictionDriftCheck:
    name = NAME
    phases = PHASES
    methods = frozenset({SEQUENTIAL, WINDOW})
    default_method = SEQUENTIAL

    def validate(self, spec: CheckSpec) -> None:
        if not 0.0 < spec.threshold <= 1.0:
            raise ValueError(
                f"{self.name} threshold is a share of drifted features in (0, 1], "
                f"got {spec.threshold!r}"
            )

    def evaluate(self, stats: WindowStats, spec: CheckSpec, min_requests: int) -> CheckResult:
        window = self._window(stats, spec)
        if not spec.sequential:
            return window
        prior = stats.prior.get(self.name)
        counts = stats.closing and window.passed is not None
        if prior is None and not counts:  # nothing counted yet: no evidence to act on
            return CheckResult(
                self.name, None, None, spec.threshold, window.detail, pending=window.pending
            )
        ev = windows_sprt(
            prior,
            self.name,
            judged=int(counts),
            failed=int(counts and window.passed is False),
            p0=WINDOW_FALSE_ALARM,
            p1=DRIFTED_WINDOW_RATE,
            alpha=spec.alpha,
            beta=spec.beta,
        )
        detail = (
            f"{ev.challenger_errors} of {ev.challenger_requests} windows drifted; log LR "
            f"{ev.statistic:.3f} (fail >= {ev.fail_boundary:.3f}, pass <= "
            f"{ev.pass_boundary:.3f}); this window: {window.detail}"
        )
        return CheckResult(
            self.name,
            {"pass": True, "fail": False}.get(ev.decision or ""),
            ev.statistic,
            ev.fail_boundary,
            detail,
            report_id=window.report_id,
            evidence=ev,
            pending=window.pending,
        )

    def _window(self, stats: WindowStats, spec: CheckSpec) -> CheckResult:
        """This window's report alone: pass below ``threshold``, fail at or above it."""
        data = stats.extra.get(self.name)
        if not isinstance(data, DriftEvidence):
            return CheckResult(self.name, None, None, spec.threshold, "no drift data yet")
        if data.pending:
            detail = "the drift monitor is still measuring this window; it stays open"
            return CheckResult(self.name, None, None, spec.threshold, detail, pending=True)
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
        mirrored = stats.shadow.compared
        if share < spec.threshold and mirrored and not (paired is not None and paired.judged):
            # A shadowed window is judged on its pairs. The challenger's answers matching its
            # own reference say nothing about how they compare with the champion's (a dimmed
            # challenger matches a dimmed reference), so they may fail a window, never pass it.
            return CheckResult(
                self.name,
                None,
                None,
                spec.threshold,
                f"{mirrored} mirrored requests, {data.pairs} paired in the drift windows: not "
                f"enough to compare with the champion yet ({what}: no drift)",
            )
        drifted = ", ".join(worst.drifted_features) or "none"
        return CheckResult(
            self.name,
            share < spec.threshold,
            share,
            spec.threshold,
            f"{what}: drifted {drifted} ({worst.current_rows} rows); report {worst.report_id}",
            report_id=worst.report_id,
        )
