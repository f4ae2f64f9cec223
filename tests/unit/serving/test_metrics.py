"""serving.metrics helpers that need no Ray."""

from __future__ import annotations

from serving.metrics import route_label


def test_route_labels_name_configured_routes_and_fold_everything_else() -> None:
    known = {"people": object(), "forms": object()}
    assert route_label("pipeline", "people", known) == "pipeline:people"
    # Typos and hostile names from the URL share one series and never reach a metric tag.
    assert route_label("pipeline", "peple", known) == "pipeline:unknown"
    assert route_label("model", "´Z\U000a71d1", {"detector"}) == "model:unknown"
