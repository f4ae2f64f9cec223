"""The CLI and the metric names are the same before and after a refactor (see tests/snapshots)."""

from __future__ import annotations

from tests.snapshots.behaviour import cli_help_texts, compare


def test_every_cli_help_text_is_unchanged() -> None:
    texts = cli_help_texts()
    assert {"canaryserve", "canaryserve rollout pause", "canaryserve keys add"} <= set(texts)
    compare("cli_help.json", texts)


def test_metric_names_are_unchanged() -> None:
    from serving.metrics import exported_names

    names = sorted(exported_names())
    assert "ray_canaryserve_requests_total" in names
    compare("metric_names.json", names)
