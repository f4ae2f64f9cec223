"""serving.metrics helpers that need no Ray."""

from __future__ import annotations

from typing import Any

import pytest

from serving import metrics
from serving.metrics import route_label


def test_route_labels_name_configured_routes_and_fold_everything_else() -> None:
    known = {"people": object(), "forms": object()}
    assert route_label("pipeline", "people", known) == "pipeline:people"
    # Typos and hostile names from the URL share one series and never reach a metric tag.
    assert route_label("pipeline", "peple", known) == "pipeline:unknown"
    assert route_label("model", "´Z\U000a71d1", {"detector"}) == "model:unknown"


class _Gauge:
    def __init__(self) -> None:
        self.calls: list[tuple[float, dict[str, str]]] = []

    def set(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append((value, tags))


def test_refresh_sets_every_gauge_again_to_its_last_value(monkeypatch: pytest.MonkeyPatch) -> None:
    gauges: dict[str, Any] = {k: _Gauge() for k in ("in_flight", "drift_share", "shadow_agreement")}
    monkeypatch.setattr(metrics, "_metrics", lambda: gauges)
    monkeypatch.setattr(metrics, "_GAUGES", {})
    metrics.set_in_flight("pipeline:people", "r1", 3)
    metrics.set_in_flight("pipeline:people", "r1", 0)  # the last value is what stays exported
    metrics.set_shadow_agreement("detector", 2, 0.97)
    for g in gauges.values():
        g.calls.clear()
    assert metrics.refresh_gauges() == 2
    assert gauges["in_flight"].calls == [(0.0, {"replica": "r1", "route": "pipeline:people"})]
    assert gauges["shadow_agreement"].calls == [(0.97, {"model": "detector", "version": "2"})]
    assert gauges["drift_share"].calls == []
