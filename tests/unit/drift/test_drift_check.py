from __future__ import annotations

from typing import Any

import pytest

from drift.check import PredictionDriftCheck
from serving.rollouts import checks
from serving.rollouts.checks import CheckResult, WindowStats, register_check
from serving.rollouts.evidence import DriftEvidence
from serving.rollouts.spec import CheckSpec


@pytest.fixture(autouse=True)
def prediction_drift(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing drift.check registers nothing: register it as app assembly does (on a copy
    of the registry, so that no other test sees it)."""
    monkeypatch.setattr(checks, "CHECKS", dict(checks.CHECKS))
    register_check(PredictionDriftCheck())


def _entry(status: str, share: float, rid: str = "rep-1") -> dict[str, Any]:
    return {
        "report_id": rid,
        "status": status,
        "drift_share": share,
        "drifted_features": ["pred_count"] if share else [],
        "reference_rows": 40,
        "current_rows": 40,
    }


def _evaluate(data: dict[str, Any] | None, *, mirrored: int = 0) -> Any:
    """One window's report alone (``method: window``); ``mirrored`` shadow calls compared."""
    stats = WindowStats()
    for _ in range(mirrored):
        stats.shadow.record(1.0)
    if data is not None:
        stats.extra["prediction_drift"] = DriftEvidence.model_validate(data)
    # needs the check registered
    spec = CheckSpec(name="prediction_drift", threshold=0.5, method="window")
    return PredictionDriftCheck().evaluate(stats, spec, 20)


def _windows(outcomes: list[str | None], *, close: bool = True) -> list[CheckResult]:
    """Sequential results, one per window: ``drift``, ``no_drift`` or None (no verdict)."""
    spec = CheckSpec(name="prediction_drift", threshold=0.5)
    assert spec.sequential  # the default
    prior: dict[str, Any] = {}
    out = []
    for outcome in outcomes:
        stats = WindowStats(prior=dict(prior), closing=close)
        if outcome is not None:
            share = 0.75 if outcome == "drift" else 0.0
            data = {"pairs": 40, "vs_champion": _entry(outcome, share, f"rep-{len(out)}")}
            stats.extra["prediction_drift"] = DriftEvidence.model_validate(data)
        res = PredictionDriftCheck().evaluate(stats, spec, 20)
        out.append(res)
        if res.evidence is not None:
            prior["prediction_drift"] = res.evidence
    return out


def test_sequentially_two_drifted_windows_fail_and_two_clean_ones_pass() -> None:
    first, second = _windows(["drift", "drift"])
    assert first.passed is None and first.evidence is not None
    assert first.evidence.challenger_errors == 1 and first.report_id == "rep-0"
    assert second.passed is False and second.report_id == "rep-1"
    assert second.value == second.evidence.statistic >= second.threshold  # type: ignore[union-attr]
    assert "2 of 2 windows drifted" in second.detail
    clean = _windows(["no_drift", "no_drift"])
    assert [r.passed for r in clean] == [None, True]
    ev = clean[-1].evidence
    assert ev is not None and ev.statistic <= ev.pass_boundary and ev.test == "sprt"


def test_sequentially_a_drifted_window_after_a_pass_holds_the_rollout() -> None:
    results = _windows(["no_drift", "no_drift", "drift", "drift", "drift"])
    # The clean windows' evidence is spent first: the third drifted window fails it.
    assert [r.passed for r in results] == [None, True, None, None, False]


def test_sequentially_windows_without_a_verdict_count_for_nothing() -> None:
    results = _windows(["no_drift", None, "insufficient_data", "no_drift"])
    assert [r.passed for r in results] == [None, None, None, True]
    assert results[-1].evidence.challenger_requests == 2  # type: ignore[union-attr]


def test_sequentially_a_window_counts_once_at_its_close_not_at_every_look() -> None:
    looks = _windows(["drift"] * 5, close=False)
    detail = "challenger vs champion (paired): drifted pred_count (40 rows); report rep-0"
    assert looks[0] == CheckResult("prediction_drift", None, None, 0.5, detail)
    assert all(r.passed is None and r.evidence is None for r in looks)
    (closed,) = _windows(["drift"])
    assert closed.evidence is not None and closed.evidence.challenger_requests == 1


def test_no_data_is_no_verdict() -> None:
    assert _evaluate(None).passed is None
    assert _evaluate({"pairs": 3, "vs_champion": _entry("insufficient_data", 0.0)}).passed is None


def test_paired_drift_fails_with_its_report_id() -> None:
    result = _evaluate({"pairs": 40, "vs_champion": _entry("drift", 0.75, "rep-9")})
    assert result.passed is False and result.value == 0.75 and result.report_id == "rep-9"
    assert "challenger vs champion" in result.detail


def test_share_below_threshold_passes() -> None:
    result = _evaluate({"vs_champion": _entry("no_drift", 0.25)})
    assert result.passed is True and result.value == 0.25


def test_reference_drift_counts_only_when_the_champion_did_not_move() -> None:
    mine = _entry("drift", 1.0, "rep-ref")
    alone = _evaluate({"vs_reference": mine, "champion_vs_reference": _entry("no_drift", 0.0)})
    assert alone.passed is False and alone.report_id == "rep-ref"
    both = _evaluate({"vs_reference": mine, "champion_vs_reference": _entry("drift", 1.0)})
    assert both.passed is None and "traffic moved" in both.detail


def test_a_shadowed_window_passes_on_its_pairs_only() -> None:
    """Under load the capture lags: the window's mirrored requests are not paired yet, but the
    challenger's answers match its own reference (a dimmed challenger, a dimmed reference). That
    must not count as a clean window, or a drifting challenger is promoted on no evidence."""
    own = {
        "pairs": 2,
        "vs_champion": _entry("insufficient_data", 0.0),
        "vs_reference": _entry("no_drift", 0.0, "rep-ref"),
        "champion_vs_reference": _entry("no_drift", 0.0),
    }
    held = _evaluate(own, mirrored=30)
    assert held.passed is None and "30 mirrored requests, 2 paired" in held.detail
    # Without shadow traffic (the canary phase) the reference comparison is the evidence.
    assert _evaluate(own).passed is True
    # It may still fail a shadowed window: the challenger moved, the champion did not.
    moved = dict(own, vs_reference=_entry("drift", 1.0, "rep-ref"))
    failed = _evaluate(moved, mirrored=30)
    assert failed.passed is False and failed.report_id == "rep-ref"
    assert (held.name, held.threshold, held.value, held.pending) == (
        "prediction_drift",
        0.5,
        None,
        False,  # the pairs may never come (sampled capture): no verdict, not a wait
    )
    # At the threshold the reference comparison fails a shadowed window too.
    at = dict(own, vs_reference=_entry("drift", 0.5, "rep-ref"))
    assert _evaluate(at, mirrored=30).passed is False
    # Pairs judged: they decide as before.
    paired = dict(own, vs_champion=_entry("no_drift", 0.0, "rep-pair"))
    assert _evaluate(paired, mirrored=30).passed is True


def test_a_window_still_being_measured_is_pending_not_judged() -> None:
    result = _evaluate({"pending": True})
    assert (result.name, result.passed, result.value, result.threshold) == (
        "prediction_drift",
        None,
        None,
        0.5,
    )
    assert result.pending is True
    assert result.detail == "the drift monitor is still measuring this window; it stays open"
    # Sequentially, before and after a counted window, the flag reaches the state machine.
    spec = CheckSpec(name="prediction_drift", threshold=0.5)
    stats = WindowStats(closing=True)
    stats.extra["prediction_drift"] = DriftEvidence(pending=True)
    first = PredictionDriftCheck().evaluate(stats, spec, 20)
    assert first.pending and first.passed is None and first.evidence is None
    counted = _windows(["drift"])[0]
    stats.prior["prediction_drift"] = counted.evidence  # type: ignore[assignment]
    later = PredictionDriftCheck().evaluate(stats, spec, 20)
    assert later.pending and later.passed is None and later.evidence == counted.evidence


def test_worst_comparison_decides() -> None:
    result = _evaluate(
        {
            "vs_champion": _entry("no_drift", 0.25, "a"),
            "vs_reference": _entry("drift", 0.75, "b"),
            "champion_vs_reference": _entry("no_drift", 0.0, "c"),
        }
    )
    assert result.passed is False and result.report_id == "b"


@pytest.mark.parametrize("threshold", [0.0, 1.5])
def test_threshold_is_a_share(threshold: float) -> None:
    with pytest.raises(ValueError, match="share of drifted features"):
        CheckSpec(name="prediction_drift", threshold=threshold)


def _result(
    passed: bool | None, value: float | None, detail: str, report_id: str | None = None
) -> CheckResult:
    return CheckResult("prediction_drift", passed, value, 0.5, detail, report_id=report_id)


def test_every_no_verdict_says_why_in_the_rollout_events() -> None:
    assert _evaluate(None) == _result(None, None, "no drift data yet")
    thin = _evaluate({"pairs": 3, "vs_champion": _entry("insufficient_data", 0.0)})
    assert thin == _result(None, None, "3 paired requests; not enough rows for a verdict")
    moved = _evaluate(
        {
            "pairs": 7,
            "vs_reference": _entry("drift", 1.0),
            "champion_vs_reference": _entry("drift", 1.0),
        }
    )
    assert moved == _result(
        None,
        None,
        "7 paired requests; not enough rows for a verdict; "
        "the champion drifts from its reference too (traffic moved)",
    )


def test_a_verdict_names_the_comparison_the_features_the_rows_and_the_report() -> None:
    paired = _evaluate({"pairs": 40, "vs_champion": _entry("drift", 0.75, "rep-9")})
    assert paired == _result(
        False,
        0.75,
        "challenger vs champion (paired): drifted pred_count (40 rows); report rep-9",
        "rep-9",
    )
    mine = _evaluate(
        {"vs_reference": _entry("no_drift", 0.0, "rep-r"), "champion_vs_reference": None}
    )
    assert mine == _result(
        True, 0.0, "challenger vs its reference: drifted none (40 rows); report rep-r", "rep-r"
    )


def test_a_share_at_the_threshold_fails() -> None:
    assert _evaluate({"vs_champion": _entry("drift", 0.5)}).passed is False


def test_a_champion_at_the_threshold_has_moved_and_excuses_the_reference_drift() -> None:
    result = _evaluate(
        {"vs_reference": _entry("drift", 1.0), "champion_vs_reference": _entry("drift", 0.5)}
    )
    assert result.passed is None and "traffic moved" in result.detail


def test_the_comparison_with_the_larger_share_decides_whichever_it_is() -> None:
    result = _evaluate(
        {
            "vs_champion": _entry("drift", 0.75, "paired"),
            "vs_reference": _entry("no_drift", 0.25, "ref"),
            "champion_vs_reference": _entry("no_drift", 0.0),
        }
    )
    assert (result.passed, result.value, result.report_id) == (False, 0.75, "paired")


def test_a_threshold_of_one_is_allowed() -> None:
    assert CheckSpec(name="prediction_drift", threshold=1.0).threshold == 1.0


def test_several_drifted_features_are_listed_comma_separated() -> None:
    entry = {**_entry("drift", 1.0, "rep-2"), "drifted_features": ["pred_count", "pred_score"]}
    result = _evaluate({"pairs": 40, "vs_champion": entry})
    assert result.detail == (
        "challenger vs champion (paired): drifted pred_count, pred_score (40 rows); report rep-2"
    )
