"""The shipped Grafana dashboard and Prometheus config name only metrics the platform defines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from serving.metrics import exported_names

MONITORING = Path(__file__).resolve().parents[2] / "k8s" / "monitoring"
_METRIC = re.compile(r"\b(ray_canaryserve_[a-z0-9_]+)")
_SUFFIXES = ("_bucket", "_sum", "_count")


def panel_metrics(dashboard: dict) -> dict[str, set[str]]:
    """Panel title -> base metric names its queries use (histogram suffixes stripped)."""
    out = {}
    for panel in dashboard["panels"]:
        names = set()
        for target in panel["targets"]:
            for name in _METRIC.findall(target["expr"]):
                for suffix in _SUFFIXES:
                    if name.endswith(suffix):
                        name = name[: -len(suffix)]
                names.add(name)
        out[panel["title"]] = names
    return out


def test_every_panel_queries_a_defined_platform_metric() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    defined = exported_names()
    per_panel = panel_metrics(dashboard)
    assert per_panel and all(per_panel.values()), "every panel needs a platform metric"
    unknown = {t: n - defined for t, n in per_panel.items() if n - defined}
    assert not unknown, unknown
    # The views the issue asks for are there.
    titles = " | ".join(per_panel)
    for wanted in ("p99", "Error rate", "Canary weight", "Drift share"):
        assert wanted in titles


def test_prometheus_config_scrapes_the_platform_once() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["canaryserve"]["metrics_path"] == "/metrics"
    drops = jobs["ray"]["metric_relabel_configs"]
    assert any(d["action"] == "drop" and d["regex"] == "ray_canaryserve_.*" for d in drops)
