"""Every platform metric is defined here.

Metrics are ``ray.util.metrics`` objects: each replica (ingress and model deployments alike)
records into its own process and Ray's metrics agent exports all of them, per node, in
Prometheus format (names get Ray's ``ray_`` prefix). The ingress's ``/metrics`` gathers the
``canaryserve_*`` series from every node's export, so one scrape shows every replica.
Objects are created lazily: creating a Ray metric needs a connected worker, and modules must
import on any machine.
"""

from __future__ import annotations

import functools
from typing import Any

LATENCY_BUCKETS_S = [
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.4,
    0.6,
    0.8,
    1.0,
    1.5,
    2.5,
    4.0,
    6.0,
    10.0,
    20.0,
    40.0,
]
BATCH_BUCKETS = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128]
PREFIX = "canaryserve_"


@functools.cache
def _metrics() -> dict[str, Any]:
    from ray.util import metrics as m

    return {
        "request_latency": m.Histogram(
            PREFIX + "request_latency_seconds",
            description="End-to-end request latency at the ingress, per route and model version.",
            boundaries=LATENCY_BUCKETS_S,
            tag_keys=("route", "model", "version", "status"),
        ),
        "requests": m.Counter(
            PREFIX + "requests_total",
            description="Requests answered by the ingress, per route and HTTP status.",
            tag_keys=("route", "status", "code"),
        ),
        "inference_latency": m.Histogram(
            PREFIX + "inference_latency_seconds",
            description="Time of one batched model call inside a replica.",
            boundaries=LATENCY_BUCKETS_S,
            tag_keys=("model", "version"),
        ),
        "batch_size": m.Histogram(
            PREFIX + "batch_size",
            description="Items per batched model call.",
            boundaries=BATCH_BUCKETS,
            tag_keys=("model", "version"),
        ),
        "drift_share": m.Gauge(
            PREFIX + "drift_share",
            description="Share of drifted features in the latest drift report, per model "
            "version and comparison (reference, challenger_vs_champion, ...).",
            tag_keys=("model", "version", "kind"),
        ),
        "drift_feature_score": m.Gauge(
            PREFIX + "drift_feature_score",
            description="Latest drift score per feature: a p-value or a distance (see method).",
            tag_keys=("model", "version", "feature", "method"),
        ),
        "drift_feature_drifted": m.Gauge(
            PREFIX + "drift_feature_drifted",
            description="1 if the feature drifted in the latest reference report, else 0.",
            tag_keys=("model", "version", "feature"),
        ),
        "drift_rows": m.Counter(
            PREFIX + "drift_rows_total",
            description="Captured drift rows persisted by the monitor, per model version.",
            tag_keys=("model", "version", "source"),
        ),
        "drift_rows_dropped": m.Counter(
            PREFIX + "drift_rows_dropped_total",
            description="Drift rows an ingress dropped (queue full, monitor slow or down).",
            tag_keys=(),
        ),
        "drift_alerts": m.Counter(
            PREFIX + "drift_alerts_total",
            description="Champion drift alerts raised (never an automatic rollback).",
            tag_keys=("model", "version"),
        ),
    }


def observe_drift(kind: str, data: dict[str, Any]) -> None:
    """The drift monitor's observer: rows persisted, reports made, alerts raised."""
    mt = _metrics()
    if kind == "rows":
        tags = {"model": data["model"], "version": str(data["version"]), "source": data["source"]}
        mt["drift_rows"].inc(data["n"], tags=tags)
    elif kind == "report":
        verdict = data["verdict"]
        base = {"model": data["model"], "version": str(data["version"])}
        mt["drift_share"].set(verdict["drift_share"], tags={**base, "kind": data["kind"]})
        if data["kind"] == "reference":
            for f in verdict["features"]:
                if f["score"] is not None:
                    mt["drift_feature_score"].set(
                        f["score"], tags={**base, "feature": f["name"], "method": f["method"]}
                    )
                mt["drift_feature_drifted"].set(
                    1.0 if f["drifted"] else 0.0, tags={**base, "feature": f["name"]}
                )
    elif kind == "alert":
        mt["drift_alerts"].inc(1, tags={"model": data["model"], "version": str(data["version"])})


def count_dropped_drift_rows(n: int) -> None:
    if n > 0:
        _metrics()["drift_rows_dropped"].inc(n)


def observe_request(
    route: str, status: int, code: str, seconds: float, versions: dict[str, int]
) -> None:
    mt = _metrics()
    mt["requests"].inc(1, tags={"route": route, "status": str(status), "code": code})
    targets = versions.items() or [("none", "none")]
    for model, version in targets:
        mt["request_latency"].observe(
            seconds,
            tags={"route": route, "model": model, "version": str(version), "status": str(status)},
        )


def observe_batch(model: str, version: int, size: int, seconds: float) -> None:
    mt = _metrics()
    tags = {"model": model, "version": str(version)}
    mt["inference_latency"].observe(seconds, tags=tags)
    mt["batch_size"].observe(size, tags=tags)


def filter_exposition(text: str) -> str:
    """Keep only the platform's series (and their HELP/TYPE lines) from a Ray export."""
    keep = []
    for line in text.splitlines():
        body = line[7:] if line.startswith(("# HELP ", "# TYPE ")) else line
        if body.startswith(("ray_" + PREFIX, PREFIX)):
            keep.append(line)
    return "\n".join(keep) + ("\n" if keep else "")


def scrape_cluster(timeout_s: float = 5.0) -> str:
    """The platform's series from every live node's Ray metrics export, concatenated."""
    import urllib.request

    import ray

    chunks = []
    for node in ray.nodes():
        port, addr = node.get("MetricsExportPort"), node.get("NodeManagerAddress")
        if not node.get("Alive") or not port or not addr:
            continue
        try:
            with urllib.request.urlopen(f"http://{addr}:{port}/metrics", timeout=timeout_s) as r:
                chunks.append(filter_exposition(r.read().decode()))
        except OSError:
            continue  # a node going away must not break the scrape of the others
    return "".join(chunks)
