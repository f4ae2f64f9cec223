"""The platform's metrics: names, kinds, descriptions, labels and buckets (one table).

:mod:`serving.metrics` creates them and records into them; this module is plain data, so
docs, dashboards and tests can read the table without Ray.
"""

from __future__ import annotations

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
STAGE_BUCKETS_S = [0.0005, 0.001, 0.0025, *LATENCY_BUCKETS_S]
INGRESS_STAGES = ("parse", "capture", "audit", "serialise")
REPLICA_STAGES = ("queue", "decode", "model", "postprocess")
BATCH_BUCKETS = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128]
PREFIX = "canaryserve_"


# key -> (kind, name without prefix, description, tag keys, histogram boundaries)
SPECS: dict[str, tuple[str, str, str, tuple[str, ...], list[float] | None]] = {
    "request_latency": (
        "histogram",
        "request_latency_seconds",
        "End-to-end request latency at the ingress, per route and model version.",
        ("route", "model", "version", "status"),
        LATENCY_BUCKETS_S,
    ),
    "requests": (
        "counter",
        "requests_total",
        "Requests answered by the ingress, per route, HTTP status and error code.",
        ("route", "status", "code"),
        None,
    ),
    "in_flight": (
        "gauge",
        "requests_in_flight",
        "Requests admitted and not yet answered, per ingress replica and route.",
        ("route", "replica"),
        None,
    ),
    "rejected": (
        "counter",
        "requests_rejected_total",
        "Requests refused by admission control (503 + Retry-After), per route.",
        ("route",),
        None,
    ),
    "inference_latency": (
        "histogram",
        "inference_latency_seconds",
        "Time of one batched model call inside a replica.",
        ("model", "version"),
        LATENCY_BUCKETS_S,
    ),
    "stage_latency": (
        "histogram",
        "stage_seconds",
        "Where a request's time goes, per stage: parse, capture, audit, serialise (ingress, "
        "per route); queue, decode, model, postprocess (model replica, per model version; a "
        "batched stage counts its whole batch for each item in it).",
        ("stage", "route", "model", "version"),
        STAGE_BUCKETS_S,
    ),
    "batch_size": (
        "histogram",
        "batch_size",
        "Items per batched model call.",
        ("model", "version"),
        [float(b) for b in BATCH_BUCKETS],
    ),
    "canary_weight": (
        "gauge",
        "canary_weight",
        "Percent of traffic each served model version gets (champion and challenger).",
        ("model", "version"),
        None,
    ),
    "rollout_state": (
        "gauge",
        "rollout_state",
        "Rollout state per model: 0 none, 1 pending, 2 shadow, 3 progressing, 4 paused.",
        ("model",),
        None,
    ),
    "shadow_agreement": (
        "gauge",
        "shadow_agreement",
        "Agreement of the latest mirrored challenger answer with the champion's (0..1).",
        ("model", "version"),
        None,
    ),
    "items": (
        "counter",
        "items_processed_total",
        "Images or clips a pipeline or model route processed successfully.",
        ("pipeline",),
        None,
    ),
    "results": (
        "counter",
        "results_total",
        "Results (detections, text lines, actions) by confidence band: low below 0.6.",
        ("pipeline", "confidence"),
        None,
    ),
    "action_alerts": (
        "counter",
        "action_alerts_total",
        "Alerts raised by clip pipelines, per action label.",
        ("pipeline", "action"),
        None,
    ),
    "drift_share": (
        "gauge",
        "drift_share",
        "Share of drifted features in the latest drift report, per model version and "
        "comparison (reference, challenger_vs_champion, ...).",
        ("model", "version", "kind"),
        None,
    ),
    "drift_feature_score": (
        "gauge",
        "drift_feature_score",
        "Latest drift score per feature: a p-value or a distance (see method).",
        ("model", "version", "feature", "method"),
        None,
    ),
    "drift_feature_drifted": (
        "gauge",
        "drift_feature_drifted",
        "1 if the feature drifted in the latest reference report, else 0.",
        ("model", "version", "feature"),
        None,
    ),
    "drift_group_drifted": (
        "gauge",
        "drift_group_drifted",
        "1 if the group (input, prediction, embedding) drifted in the latest reference "
        "report, else 0.",
        ("model", "version", "group"),
        None,
    ),
    "drift_rows": (
        "counter",
        "drift_rows_total",
        "Captured drift rows persisted by the monitor, per model version.",
        ("model", "version", "source"),
        None,
    ),
    "drift_rows_dropped": (
        "counter",
        "drift_rows_dropped_total",
        "Drift rows an ingress dropped (queue full, monitor slow or down).",
        (),
        None,
    ),
    "drift_alerts": (
        "counter",
        "drift_alerts_total",
        "Champion drift alerts raised (never an automatic rollback).",
        ("model", "version"),
        None,
    ),
}
ROLLOUT_STATE_CODES = {"pending": 1, "shadow": 2, "progressing": 3, "paused": 4}
LOW_CONFIDENCE = 0.6
