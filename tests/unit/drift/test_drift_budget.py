"""The capture's CPU budget: a token bucket of CPU seconds refilled at a share of one core."""

from __future__ import annotations

import pytest

from drift.capture import CpuBudget


def test_a_full_budget_allows_its_burst_then_refills_at_its_share_of_a_core() -> None:
    now = [100.0]
    budget = CpuBudget(0.25, burst_s=1.0, clock=lambda: now[0])
    assert budget.available() and budget.level == 1.0
    budget.spend(0.6)
    assert budget.available() and budget.level == pytest.approx(0.4)
    budget.spend(0.6)  # paid after it ran: the level may go below zero
    assert not budget.available() and budget.level == pytest.approx(-0.2)
    now[0] += 0.8  # 0.8 s at a quarter of a core pays 0.2 CPU s back: still not above zero
    assert not budget.available()
    now[0] += 0.4
    assert budget.available() and budget.level == pytest.approx(0.1)
    now[0] += 1000.0  # idle time never saves more than the burst
    assert budget.level == 1.0


def test_a_negative_spend_refunds_nothing() -> None:
    budget = CpuBudget(0.5, burst_s=1.0, clock=lambda: 0.0)
    budget.spend(-5.0)
    assert budget.level == 1.0


@pytest.mark.parametrize(("share", "burst"), [(0.0, 1.0), (1.5, 1.0), (-0.1, 1.0), (0.1, 0.0)])
def test_a_share_outside_one_core_or_an_empty_burst_is_refused(share: float, burst: float) -> None:
    with pytest.raises(ValueError, match="has value"):
        CpuBudget(share, burst_s=burst)
