"""The drift evidence the controller gets from the drift monitor (another actor)."""

from __future__ import annotations

import pickle

import pytest
from pydantic import ValidationError

from serving.rollouts.evidence import DriftComparison, DriftEvidence


def _comparison(status: str = "drift", share: float = 0.5) -> dict[str, object]:
    return {
        "report_id": "rep-1",
        "status": status,
        "drift_share": share,
        "drifted_features": ["pred_count"],
        "reference_rows": 40,
        "current_rows": 30,
        "against": "champion v1 on the same 30 requests",
    }


def test_evidence_survives_pickling_across_the_actor_boundary() -> None:
    evidence = DriftEvidence.model_validate({"pairs": 30, "vs_champion": _comparison()})
    again = pickle.loads(pickle.dumps(evidence))
    assert again == evidence
    assert again.vs_champion is not None and again.vs_champion.drifted_features == ("pred_count",)
    assert again.vs_reference is None and again.champion_vs_reference is None


def test_a_comparison_without_enough_rows_has_no_verdict() -> None:
    assert DriftComparison.model_validate(_comparison("drift")).judged
    assert DriftComparison.model_validate(_comparison("no_drift", 0.0)).judged
    assert not DriftComparison.model_validate(_comparison("insufficient_data", 0.0)).judged


def test_unknown_fields_and_statuses_are_refused() -> None:
    with pytest.raises(ValidationError, match="status"):
        DriftComparison.model_validate(_comparison("drifting"))
    with pytest.raises(ValidationError, match="extra"):
        DriftEvidence.model_validate({"pairs": 1, "vs_champoin": _comparison()})
