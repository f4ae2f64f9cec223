"""The one rule for low-confidence outcomes: uncertain, review, deliver."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serving.pipelines.alerts import AlertRule

RULE = AlertRule(labels=["reaching", "crouching"], uncertain_below=0.5, review_below=0.8)


@pytest.mark.parametrize(
    ("label", "confidence", "want"),
    [
        ("reaching", 0.4999, None),  # uncertain: never an alert
        ("reaching", 0.5, ("review", "below_review_threshold")),
        ("reaching", 0.7999, ("review", "below_review_threshold")),
        ("reaching", 0.8, ("deliver", "confident")),
        ("walking", 0.99, None),  # not an alerting label
    ],
)
def test_route_by_confidence(label: str, confidence: float, want: object) -> None:
    assert RULE.route(label, confidence) == want


def test_outcome_is_uncertain_below_the_threshold_only() -> None:
    assert RULE.outcome("walking", 0.49) == "uncertain"
    assert RULE.outcome("walking", 0.5) == "walking"


def test_high_risk_labels_always_go_to_review() -> None:
    rule = AlertRule(labels=["reaching"], high_risk=["reaching"], review_below=0.8)
    assert rule.route("reaching", 0.99) == ("review", "high_risk_label")
    assert rule.route("reaching", 0.3) is None  # uncertain still wins


def test_inconsistent_rules_are_refused_quoting_the_values() -> None:
    with pytest.raises(ValidationError, match=r"review_below 0\.4 is below uncertain_below 0\.5"):
        AlertRule(labels=["reaching"], uncertain_below=0.5, review_below=0.4)
    with pytest.raises(ValidationError, match=r"high_risk labels \['running'\]"):
        AlertRule(labels=["reaching"], high_risk=["running"])
