"""Every platform metric is created and recorded here (the table: :mod:`serving.metric_specs`).

Metrics are ``ray.util.metrics`` objects: each replica (ingress and model deployments alike)
records into its own process and Ray's metrics agent exports all of them, per node, in
Prometheus format (names get Ray's ``ray_`` prefix). The ingress's ``/metrics`` gathers the
``canaryserve_*`` series from every node's export, so one scrape shows every replica.
Objects are created lazily: creating a Ray metric needs a connected worker, and modules must
import on any machine.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from serving.metric_specs import LOW_CONFIDENCE, PREFIX, ROLLOUT_STATE_CODES
from serving.metric_specs import SPECS as _SPECS
from serving.threads import lower_thread_priority

log = logging.getLogger("canaryserve.metrics")


def exported_names() -> set[str]:
    """Names as they appear in Ray's export (and so at /metrics): ``ray_`` + prefix + name."""
    return {"ray_" + PREFIX + spec[1] for spec in _SPECS.values()}


@functools.cache
def _metrics() -> dict[str, Any]:
    from ray.util import metrics as m

    out: dict[str, Any] = {}
    for key, (kind, name, description, tags, buckets) in _SPECS.items():
        if kind == "histogram":
            out[key] = m.Histogram(
                PREFIX + name, description=description, boundaries=buckets or [], tag_keys=tags
            )
        elif kind == "counter":
            out[key] = m.Counter(PREFIX + name, description=description, tag_keys=tags)
        else:
            out[key] = m.Gauge(PREFIX + name, description=description, tag_keys=tags)
    return out


# Every gauge value this process set, to be set again by ``refresh_gauges``: Ray's metrics agent
# evicts a gauge series that no process re-reported within two export intervals (finished
# tasks, dead workers), so a value set once (a drift share after a report, an idle route's
# zero in-flight count) would vanish from /metrics ~20 s later.
_GAUGES: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
_GAUGES_LOCK = threading.Lock()


def _set_gauge(key: str, value: float, tags: dict[str, str]) -> None:
    with _GAUGES_LOCK:
        _GAUGES[(key, tuple(sorted(tags.items())))] = float(value)
    _metrics()[key].set(float(value), tags=tags)


def refresh_gauges() -> int:
    """Set every gauge this process set before to its last value again (from a periodic loop
    of each process that sets gauges); returns how many series it refreshed."""
    with _GAUGES_LOCK:
        items = list(_GAUGES.items())
    mt = _metrics()
    for (key, tags), value in items:
        mt[key].set(value, tags=dict(tags))
    return len(items)


def observe_drift(kind: str, data: dict[str, Any]) -> None:
    """The drift monitor's observer: rows persisted, reports made, alerts raised."""
    mt = _metrics()
    if kind == "rows":
        tags = {"model": data["model"], "version": str(data["version"]), "source": data["source"]}
        mt["drift_rows"].inc(data["n"], tags=tags)
    elif kind == "report":
        verdict = data["verdict"]
        base = {"model": data["model"], "version": str(data["version"])}
        _set_gauge("drift_share", verdict["drift_share"], {**base, "kind": data["kind"]})
        if data["kind"] == "reference":
            for group, share in verdict.get("group_shares", {}).items():
                _set_gauge("drift_group_drifted", float(share > 0), {**base, "group": group})
            for f in verdict["features"]:
                if f["score"] is not None:
                    _set_gauge(
                        "drift_feature_score",
                        f["score"],
                        {**base, "feature": f["name"], "method": f["method"]},
                    )
                _set_gauge(
                    "drift_feature_drifted",
                    1.0 if f["drifted"] else 0.0,
                    {**base, "feature": f["name"]},
                )
    elif kind == "alert":
        mt["drift_alerts"].inc(1, tags={"model": data["model"], "version": str(data["version"])})


# --- off the request path ---------------------------------------------------------------------
# Per-request observations are appended to a local queue (a deque append, ~100 ns) and recorded
# into Ray's metrics by one daemon thread per process every EXPORT_INTERVAL_S: the request's
# coroutine never makes a Ray call. Bounded: past _MAX_PENDING the oldest are dropped.
EXPORT_INTERVAL_S = 0.5
_MAX_PENDING = 100_000
_PENDING: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque(maxlen=_MAX_PENDING)
_EXPORTER: list[threading.Thread] = []
_EXPORTER_LOCK = threading.Lock()


def _defer(fn: Callable[..., None], *args: Any) -> None:
    _PENDING.append((fn, args))
    if not _EXPORTER:
        with _EXPORTER_LOCK:
            if not _EXPORTER:
                t = threading.Thread(target=_export_loop, name="canaryserve-metrics", daemon=True)
                _EXPORTER.append(t)
                t.start()


def export_pending() -> int:
    """Record every queued observation now; returns how many (the exporter thread's step)."""
    n = 0
    while True:
        try:
            fn, args = _PENDING.popleft()
        except IndexError:
            return n
        try:
            fn(*args)
        except Exception:  # a metric must never take the exporter down
            log.exception("metric %s failed", getattr(fn, "__name__", fn))
        n += 1


def _export_loop() -> None:
    lower_thread_priority(10)
    while True:
        time.sleep(EXPORT_INTERVAL_S)
        export_pending()


def observe_stages(stages: dict[str, float], **labels: str) -> None:
    """One request's (or one batch item's) seconds per stage (``STAGES``), labelled with the
    ingress route or the model version; unset labels are empty."""
    tags = {"route": labels.get("route", ""), "model": labels.get("model", ""),
            "version": labels.get("version", "")}  # fmt: skip
    _defer(_observe_stages, stages, tags)


def _observe_stages(stages: dict[str, float], tags: dict[str, str]) -> None:
    hist = _metrics()["stage_latency"]
    for stage, seconds in stages.items():
        hist.observe(seconds, tags={**tags, "stage": stage})


def count_dropped_drift_rows(n: int) -> None:
    if n > 0:
        _metrics()["drift_rows_dropped"].inc(n)


def observe_request(
    route: str, status: int, code: str, seconds: float, versions: dict[str, int]
) -> None:
    _defer(_observe_request, route, status, code, seconds, dict(versions))


def _observe_request(
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
    _defer(_observe_batch, model, version, size, seconds)


def _observe_batch(model: str, version: int, size: int, seconds: float) -> None:
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


def route_label(kind: str, name: str, known: Any) -> str:
    """``kind:name`` for a configured pipeline or model, ``kind:unknown`` for anything else.

    The name comes from the URL: unchecked it would make a new series per typo (unbounded
    label cardinality) and could hold characters metric tags cannot carry."""
    return f"{kind}:{name}" if name in known else f"{kind}:unknown"


def set_in_flight(route: str, replica: str, n: int) -> None:
    _set_gauge("in_flight", n, {"route": route, "replica": replica})


def count_rejected(route: str) -> None:
    _defer(_metrics()["rejected"].inc, 1, {"route": route})


def set_routes(routes: dict[str, Any], states: dict[str, str]) -> None:
    """Canary weight per served version and rollout state per model (reconcile loop)."""
    for model, route in routes.items():
        weight = float(route.weight) if route.challenger is not None else 0.0
        _set_gauge(
            "canary_weight", 100.0 - weight, {"model": model, "version": str(route.champion)}
        )
        if route.challenger is not None:
            _set_gauge("canary_weight", weight, {"model": model, "version": str(route.challenger)})
        code = ROLLOUT_STATE_CODES.get(states.get(model, ""), 0)
        _set_gauge("rollout_state", float(code), {"model": model})


def set_shadow_agreement(model: str, version: int, value: float) -> None:
    _set_gauge("shadow_agreement", value, {"model": model, "version": str(version)})


def observe_results(pipeline: str, confidences: list[float], alerts: list[str]) -> None:
    """Business KPIs of one successful request: one item, its results' confidence bands, and
    the alerts it raised per action label."""
    _defer(_observe_results, pipeline, list(confidences), list(alerts))


def _observe_results(pipeline: str, confidences: list[float], alerts: list[str]) -> None:
    mt = _metrics()
    mt["items"].inc(1, tags={"pipeline": pipeline})
    low = sum(1 for c in confidences if c < LOW_CONFIDENCE)
    if low:
        mt["results"].inc(low, tags={"pipeline": pipeline, "confidence": "low"})
    if len(confidences) - low:
        mt["results"].inc(len(confidences) - low, tags={"pipeline": pipeline, "confidence": "ok"})
    for action in alerts:
        mt["action_alerts"].inc(1, tags={"pipeline": pipeline, "action": action})
