"""Routes for on-call and security staff: health, readiness, metrics, drift and the audit trail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse

from serving import metrics
from serving.errors import InvalidInput, MetricsUnavailable, UnknownAuditRecord, UnknownModel
from serving.http.services import Services


class ScrapeGate:
    """One scrape of the cluster at a time, shared, cached briefly, on its own thread.

    ``/metrics`` answers without a key (Prometheus scrapes it), and a scrape asks the GCS for
    the nodes and then reads every node's export. Run per request on the event loop's shared
    threads, a burst of scrapes (or one slow node) would take every thread the admin and audit
    routes use. Here concurrent requests wait for the scrape in flight, a result is reused for
    ``ttl_s``, scrapes run on one dedicated thread, and a request waits at most ``timeout_s``
    (then ``503 metrics_unavailable``)."""

    def __init__(
        self,
        scrape: Callable[[], str] = metrics.scrape_cluster,
        *,
        ttl_s: float = 1.0,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._scrape, self.ttl_s, self.timeout_s, self._clock = scrape, ttl_s, timeout_s, clock
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="metrics-scrape")
        self._inflight: asyncio.Future[str] | None = None
        self._last: tuple[float, str] | None = None
        self.scrapes = 0

    async def text(self) -> str:
        if self._last is not None and self._clock() - self._last[0] < self.ttl_s:
            return self._last[1]
        if self._inflight is None or self._inflight.done():
            self.scrapes += 1
            loop = asyncio.get_running_loop()
            self._inflight = asyncio.ensure_future(self._run(loop))
        try:
            return await asyncio.wait_for(asyncio.shield(self._inflight), self.timeout_s)
        except TimeoutError:
            raise MetricsUnavailable(
                f"the metrics scrape took over {self.timeout_s:g} s; try again"
            ) from None

    async def _run(self, loop: asyncio.AbstractEventLoop) -> str:
        text = await loop.run_in_executor(self._pool, self._scrape)
        self._last = (self._clock(), text)
        return text


def observability_routes(svc: Services, scrapes: ScrapeGate | None = None) -> APIRouter:
    scrapes = scrapes or ScrapeGate()
    router = APIRouter()
    gate, plane = svc.gate, svc.plane

    @router.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    @router.get("/healthz", summary="Liveness: the ingress answers.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: every model's champion answers.")
    async def readyz() -> JSONResponse:
        """Ready when each model's champion answers (the version every request can fall back
        to). Other versions are listed too, but a challenger that is failing or being drained
        after a rollback must not take the whole ingress out of its load balancer: its breaker
        and the champion fallback already keep requests off it."""
        checks: dict[str, str] = {}
        routes = plane.canary.routes
        wanted = {m: set(v) for m, v in plane.canary.running.items()}
        for model, route in routes.items():
            wanted.setdefault(model, set()).update(route.served)
        # A model's champion; before the first reconcile gives it a route, all its versions.
        required = {
            f"{m}-v{v}"
            for m, versions in wanted.items()
            for v in ([routes[m].champion] if m in routes else versions)
        }
        for model, versions in sorted(wanted.items()):
            for version in sorted(versions):
                key = f"{model}-v{version}"
                try:
                    await asyncio.wait_for(svc.handles(model, version).info.remote(), timeout=5)
                    checks[key] = "ready"
                except Exception:
                    checks[key] = "unavailable"
        ready = bool(checks) and all(checks.get(k) == "ready" for k in required)
        return JSONResponse(
            {
                "status": "ready" if ready else "not_ready",
                "deployments": checks,
                "required": sorted(required),
            },
            status_code=200 if ready else 503,
        )

    @router.get("/v1/drift", summary="Latest drift verdict per model version, and alerts.")
    async def drift_status(request: Request) -> dict[str, Any]:
        await gate.access(request, "operator")
        status: dict[str, Any] = await svc.monitor.call("status")
        q = plane.capture
        status["capture"] = (
            {
                "pending": q.pending,
                "pending_bytes": q.pending_bytes,
                "sent_rows": q.sent_rows,
                "dropped_rows": q.dropped_rows,
                "stale_rows": q.stale_rows,
                "shed_rows": q.shed_rows,
                "failed_batches": q.failed_batches,
            }
            if q is not None
            else {"enabled": False}
        )
        return status

    @router.get("/v1/drift/reports", summary="Drift reports, newest first.")
    async def drift_reports(
        request: Request,
        model: str | None = None,
        version: str | None = None,
        kind: str | None = None,
        limit: int = Query(default=50, ge=1, le=1000),
    ) -> dict[str, Any]:
        await gate.access(request, "operator")
        reports = await svc.monitor.call(
            "list_reports", model=model, version=version, kind=kind, limit=limit
        )
        return {"reports": reports}

    @router.post(
        "/v1/drift/reports",
        summary="Run a drift report now.",
        description="The newest live rows of the version (default: the champion) captured "
        "since its reference was frozen, against that reference. 201 with the report; its "
        "`status` is `no_drift`, `drift`, `insufficient_data` (too few rows on a side) or "
        "`no_reference` (no reference for the current feature set: freeze a baseline).",
        status_code=201,
    )
    async def drift_report_now(request: Request) -> JSONResponse:
        await gate.access(request, "operator")
        try:
            body = await request.json()
        except Exception:
            raise InvalidInput(
                'the body must be a JSON object like {"model": "detector"}'
            ) from None
        models = svc.config.models
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) or model not in models:
            raise UnknownModel(f"model {model!r} is not served; models: {sorted(models)}")
        version = body.get("version")
        if version is None:
            route = plane.canary.routes.get(model)
            version = route.champion if route is not None else None
        if isinstance(version, bool) or not str(version).isdigit():
            raise InvalidInput(f"version must be a version number, got {version!r}")
        report = await svc.monitor.call("report", model, int(version))
        return JSONResponse(report, status_code=201)

    @router.get(
        "/v1/drift/reports/{report_id}",
        summary="One drift report: the Evidently HTML (or its record with ?format=json).",
        response_class=HTMLResponse,
    )
    async def drift_report(report_id: str, request: Request, format: str = "html") -> Any:
        await gate.access(request, "operator")
        if format == "json":
            return JSONResponse(await svc.monitor.call("get_report", report_id))
        if format != "html":
            raise InvalidInput(f"format must be 'html' or 'json', got {format!r}")
        return HTMLResponse(await svc.monitor.call("report_html", report_id))

    @router.get("/v1/audit/{request_id}", summary="The audit record of one served request.")
    async def audit_record(request_id: str, request: Request) -> dict[str, Any]:
        await gate.access(request, "operator")
        writer = gate.audit_writer()
        record = await asyncio.to_thread(writer.store.get_request, request_id)
        if record is None:
            # Records are written in batches off the request path: give it a moment.
            await asyncio.to_thread(writer.flush, 2.0)
            record = await asyncio.to_thread(writer.store.get_request, request_id)
        if record is None:
            raise UnknownAuditRecord(f"no audit record for request {request_id!r}")
        found: dict[str, Any] = record
        return found

    @router.get("/v1/audit", summary="Audit records (requests and admin actions), newest first.")
    async def audit_query(
        request: Request,
        since: float | None = None,
        model: str | None = None,
        version: int | None = None,
        caller: str | None = None,
        error_code: str | None = None,
        limit: int = Query(default=100, ge=1, le=10_000),
    ) -> dict[str, Any]:
        await gate.access(request, "operator")
        store = gate.audit_writer().store
        requests = await asyncio.to_thread(
            lambda: store.query_requests(
                since=since,
                model=model,
                version=version,
                caller=caller,
                error_code=error_code,
                limit=limit,
            )
        )
        admin = await asyncio.to_thread(lambda: store.query_admin(since=since, limit=limit))
        return {"requests": requests, "admin": admin}

    @router.get(
        "/metrics",
        summary="Prometheus metrics of every replica (canaryserve_*).",
        response_class=PlainTextResponse,
    )
    async def metrics_route() -> PlainTextResponse:
        text = await scrapes.text()
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    return router
