from __future__ import annotations

from typing import Any

import pytest

from drift.check import PredictionDriftCheck
from serving.rollouts import checks
from serving.rollouts.checks import WindowStats, register_check
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


def _evaluate(data: dict[str, Any] | None) -> Any:
    stats = WindowStats()
    if data is not None:
        stats.extra["prediction_drift"] = DriftEvidence.model_validate(data)
    spec = CheckSpec(name="prediction_drift", threshold=0.5)  # needs the check registered
    return PredictionDriftCheck().evaluate(stats, spec, 20)


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
