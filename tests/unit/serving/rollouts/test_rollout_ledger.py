"""The evidence ledger: which checks a tick inside a window runs, and which hold a step."""

from __future__ import annotations

import pytest

from serving.rollouts import checks
from serving.rollouts.checks import CheckResult, WindowStats, register_check
from serving.rollouts.ledger import sequential_results, undecided
from serving.rollouts.sequential import Evidence
from serving.rollouts.spec import CheckSpec, parse_rollout_spec
from tests.unit.serving.rollouts.conftest import arm, detector_spec


class Broken:
    """A sequential plug-in check whose evaluation raises."""

    name = "broken"
    phases = frozenset({"shadow", "canary"})
    methods = frozenset({"sequential"})
    default_method = "sequential"

    def validate(self, spec: CheckSpec) -> None:
        return None

    def evaluate(self, stats: WindowStats, spec: CheckSpec, min_requests: int) -> CheckResult:
        raise RuntimeError("a plug-in bug")


@pytest.fixture
def broken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "CHECKS", dict(checks.CHECKS))
    register_check(Broken())


def _stats() -> WindowStats:
    return WindowStats(champion=arm(50), challenger=arm(50))


def test_inside_a_window_only_enabled_sequential_checks_of_the_phase_run(broken: None) -> None:
    spec = parse_rollout_spec(
        detector_spec(
            checks=[
                {"name": "latency_quantile", "threshold": 2.0},  # per window: not here
                {"name": "shadow_agreement", "threshold": 0.8, "enabled": False},
                {"name": "broken", "threshold": 0.5},  # raises: judged at the window's end
                {"name": "error_rate", "threshold": 0.05},
            ]
        )
    )
    got = sequential_results(spec, "canary", _stats(), 20)
    assert [r.name for r in got] == ["error_rate"]
    assert got[0].evidence is not None


def _undecided(champion_requests: int, floor: int = 20) -> CheckResult:
    ev = Evidence(check="error_rate", test="sprt", champion_requests=champion_requests, floor=floor)
    return CheckResult("error_rate", None, 0.0, 3.9, evidence=ev)


def test_at_full_weight_only_a_comparison_short_of_champion_calls_is_let_go() -> None:
    agreement = CheckResult(
        "shadow_agreement", None, 0.9, 0.8, evidence=Evidence(check="a", test="confidence_sequence")
    )
    assert undecided([_undecided(19), agreement], 100.0) == ["shadow_agreement"]
    assert undecided([_undecided(20)], 100.0) == ["error_rate"]  # at its floor: it can decide
    assert undecided([_undecided(19)], 50.0) == ["error_rate"]
