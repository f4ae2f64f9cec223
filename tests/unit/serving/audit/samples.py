"""Records to write in the audit tests: one shape, so a test only names what it varies."""

from __future__ import annotations

from dataclasses import replace

from serving.audit import AdminRecord, RequestRecord, node_entry

T0 = 1_700_000_000.0
DAY = 86_400.0


def request_record(
    rid: str,
    ts: float = T0,
    models: dict[str, int] | None = None,
    caller: str = "alice",
    error_code: str | None = None,
) -> RequestRecord:
    models = {"detector": 3} if models is None else models
    return RequestRecord(
        request_id=rid,
        ts=ts,
        caller=caller,
        route="pipeline:inspect",
        pipeline="inspect",
        nodes={m: node_entry(v, "champion", 0.0) for m, v in models.items()},
        output_summary={"detections": 1},
        latency_ms=12.5,
        status=200 if error_code is None else 502,
        error_code=error_code,
    )


def admin_record(action: str, ts: float, actor: str = "ops", rid: str | None = None) -> AdminRecord:
    record = AdminRecord(ts=ts, actor=actor, action=action, target="ro-1", detail={"weight": 10})
    return record if rid is None else replace(record, id=rid)


def ids(rows: list[dict[str, object]]) -> list[object]:
    """Request ids, or actions for admin rows, in the order a query returned them."""
    return [r.get("request_id", r.get("action")) for r in rows]
