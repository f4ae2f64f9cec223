"""HTTP ingress: FastAPI on Ray Serve. Validation, version choice and the pipeline DAGs.

Routes
  POST /v1/pipelines/{name}          run a pipeline (image or clip, see serving/requests.py)
  GET  /v1/pipelines                 the configured pipelines and their DAGs
  POST /v1/models/{name}:predict     run one model (champion unless ?version= or pinned)
  GET  /v1/models                    registry versions + aliases, and what is served where
  GET  /healthz /readyz /metrics
Every response carries the request id and the model versions that produced it (body and
``X-Request-Id`` / ``X-Model-Versions`` headers).
"""

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from drift.capture import CaptureJob, CaptureQueue
from serving import admin, metrics
from serving.audit import AdminRecord, RequestRecord, node_entry, open_store, sha256_hex
from serving.audit_writer import AuditWriter
from serving.auth import ApiKeyStore, check_access, list_keys
from serving.canary import CanaryState, ChallengerFailed
from serving.config import PlatformConfig
from serving.errors import (
    CanaryError,
    InvalidInput,
    Overloaded,
    RequestTimeout,
    ServiceUnavailable,
    UnknownAuditRecord,
    UnknownModel,
    UnknownPipeline,
    reraise_cause,
)
from serving.ops import to_json
from serving.pipeline import model_node_kinds, models_of, result_kpis, run_pipeline
from serving.requests import read_clip, read_image
from serving.router import RoutingDecision, routes_from_table
from serving.versions import PIN_HEADER, VersionTable, parse_pins, versions_header

log = logging.getLogger("canaryserve.ingress")

_IMAGE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {"image": {"type": "string", "format": "binary"}},
            }
        },
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["image_base64"],
                "properties": {"image_base64": {"type": "string", "format": "byte"}},
            }
        },
    },
}
_ANY_BODY = {
    "required": True,
    "content": {
        **_IMAGE_BODY["content"],
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "image": {"type": "string", "format": "binary"},
                    "video": {"type": "string", "format": "binary"},
                    "frames": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    "fps": {"type": "number"},
                },
            }
        },
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "image_base64": {"type": "string", "format": "byte"},
                    "video_base64": {"type": "string", "format": "byte"},
                    "frames_base64": {
                        "type": "array",
                        "items": {"type": "string", "format": "byte"},
                    },
                    "fps": {"type": "number"},
                },
            }
        },
    },
}

app = FastAPI(
    title="canaryserve",
    version="0.1.0",
    description="Versioned detection, OCR and action models composed into pipelines on Ray Serve.",
)


def error_body(code: str, message: str, request_id: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}, "request_id": request_id}


def error_response(exc: Exception, request_id: str, *, id_header: bool = True) -> JSONResponse:
    """The one table from exceptions to responses. 5xx bodies never echo exception text.

    Behind Ray Serve the proxy already answers with ``X-Request-ID`` (the same id the ingress
    read from the request), so ``id_header=False`` there avoids a duplicated header.
    """
    if isinstance(exc, CanaryError):
        status, code = exc.status_code, exc.code
        message = exc.message if status < 500 else _generic(status)
    elif isinstance(exc, RequestValidationError):
        status, code, message = 422, "invalid_request", _validation_text(exc)
    elif isinstance(exc, StarletteHTTPException):
        status = exc.status_code
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
        message = str(exc.detail) if status < 500 else _generic(status)
    elif isinstance(exc, asyncio.TimeoutError | TimeoutError):
        status, code, message = 504, RequestTimeout.code, _generic(504)
    else:
        status, code, message = 500, "internal_error", _generic(500)
    if status >= 500:
        log.error("request %s failed with %s: %r", request_id, code, exc)
    headers = {"X-Request-Id": request_id} if id_header else {}
    if status in (503, 429):
        retry = getattr(exc, "retry_after_s", 1.0)
        headers["Retry-After"] = str(max(1, round(retry)))
    return JSONResponse(error_body(code, message, request_id), status_code=status, headers=headers)


def _generic(status: int) -> str:
    return {
        502: "a model failed to answer; the request id identifies it in the logs",
        503: "the service is unavailable; retry later",
        504: "the request took longer than its timeout",
    }.get(status, "internal error; the request id identifies it in the logs")


def _validation_text(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}")
    return "; ".join(parts) or "invalid request"


def _request_id(request: Request) -> str:
    # Ray's proxy puts the caller's X-Request-ID, or one it generated, on every request and
    # echoes it in the response; using the same id keeps our records and Ray's logs joinable.
    given = request.headers.get("x-request-id", "")
    return given[:128] if given else uuid.uuid4().hex


@app.exception_handler(Exception)
async def _on_error(request: Request, exc: Exception) -> JSONResponse:
    rid = getattr(request.state, "request_id", None) or _request_id(request)
    return error_response(exc, rid, id_header=False)


@app.exception_handler(CanaryError)
async def _on_canary_error(request: Request, exc: CanaryError) -> JSONResponse:
    # Registered for the error tree itself so Starlette does not re-raise it as a server error.
    rid = getattr(request.state, "request_id", None) or _request_id(request)
    return error_response(exc, rid, id_header=False)


@app.exception_handler(RequestValidationError)
async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(exc, _request_id(request), id_header=False)


@app.exception_handler(StarletteHTTPException)
async def _on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error_response(exc, _request_id(request), id_header=False)


KEY_HEADER = "x-canary-key"
ROLLOUT_ACTIONS = ("pause", "resume", "promote", "abort")


@serve.deployment(max_ongoing_requests=64)
@serve.ingress(app)
class Ingress:
    def __init__(
        self, config: PlatformConfig, table: VersionTable, registry: dict[str, str]
    ) -> None:
        self._config = config
        self._registry = registry
        self._canary = CanaryState(
            config, routes_from_table(table), {m: list(v) for m, v in table.served.items()}
        )
        self._handles: dict[tuple[str, int], Any] = {}
        # (node, model, output kind) of every model node, per pipeline: fixed by the config.
        self._model_nodes = {n: model_node_kinds(p) for n, p in config.pipelines.items()}
        self._controller: Any = None
        self._monitor: Any = None
        self._background: list[asyncio.Task[None]] = []
        self._capture: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dropped_reported = 0
        self._in_flight: dict[str, int] = {}
        self._replica = uuid.uuid4().hex[:8]
        self._keys: Any = None
        self._keys_stamp: int | None = None
        self._audit: Any = None

    # --- background: reconcile with the registry/controller, flush stats -----------------

    def _ensure_background(self) -> None:
        if self._background and not any(t.done() for t in self._background):
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self._capture is None and self._config.drift.enabled:
            spec = self._config.drift
            self._capture = CaptureQueue(
                self._drift_sink,
                max_pending=spec.capture_queue,
                batch_size=spec.batch_size,
                flush_interval_s=spec.flush_interval_s,
                sample_rate=spec.sample_rate,
            )
        if self._audit is None and self._config.audit.enabled:
            store = open_store(self._config.audit, Path(self._registry["data_dir"]))
            self._audit = AuditWriter.from_spec(self._config.audit, store)
        self._background = [
            loop.create_task(self._reconcile_loop()),
            loop.create_task(self._flush_loop()),
        ]

    def _get_controller(self) -> Any:
        if self._controller is None:
            from serving.controller import get_controller

            self._controller = get_controller()
        return self._controller

    async def _reconcile_loop(self) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception as e:  # keep serving with the last known routes
                log.warning("reconcile failed: %r", e)
            metrics.refresh_gauges()  # gauges not re-reported would age out of Ray's export
            await asyncio.sleep(self._config.canary.reconcile_interval_s)

    async def reconcile(self) -> None:
        from serving.app import running_versions

        aliases = await asyncio.to_thread(self._read_aliases)
        running = await asyncio.to_thread(running_versions)
        rollouts: dict[str, Any] = {}
        controller = await asyncio.to_thread(self._get_controller)
        if controller is not None:
            try:
                rollouts = await asyncio.wait_for(controller.routes.remote(), timeout=10)
            except Exception as e:
                log.warning("rollout controller unreachable: %r", e)
                self._controller = None
                current = self._canary.routes
                rollouts = {
                    m: {
                        "challenger": r.challenger,
                        "weight": r.weight,
                        "shadow_share": r.shadow_share,
                        "rollout_id": r.rollout_id,
                    }
                    for m, r in current.items()
                    if r.challenger is not None
                }
        self._canary.apply(aliases, running, rollouts)
        metrics.set_routes(
            self._canary.routes, {m: str(r.get("state", "")) for m, r in rollouts.items()}
        )

    def _store(self) -> Any:
        from model_registry.mlflow_store import MlflowModelStore

        return MlflowModelStore(
            tracking_uri=self._registry["tracking_uri"],
            models_dir=Path(self._registry["data_dir"]) / "models",
        )

    def _read_aliases(self) -> dict[str, dict[str, int]]:
        store = self._store()
        return {m: store.aliases(m) for m in self._config.models}

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.canary.stats_flush_s)
            if self._capture is not None:
                dropped = self._capture.dropped_rows
                metrics.count_dropped_drift_rows(dropped - self._dropped_reported)
                self._dropped_reported = dropped
            records = self._canary.take_records()
            for rec in records:
                route = self._canary.routes.get(rec["model"])
                value = rec.get("agreement")
                if rec["kind"] == "shadow" and value is not None and route and route.challenger:
                    metrics.set_shadow_agreement(rec["model"], route.challenger, float(value))
            controller = self._controller
            if records and controller is not None:
                try:
                    controller.report.remote(records)  # fire and forget: off the request path
                except Exception:
                    self._canary.dropped_records += len(records)

    # --- drift capture (the thread side is drift/capture.py) --------------------------------

    def _get_monitor(self) -> Any:
        if self._monitor is None:
            from drift.actor import get_monitor

            self._monitor = get_monitor()
        return self._monitor

    def _drift_sink(self, rows: list[dict[str, Any]]) -> None:
        """Runs in the capture thread: hand a batch to the monitor, or raise (counted).

        The call itself is made on the replica's event loop, like every other Ray call of this
        process: a blocking ``ray.get`` from a second thread stalled the loop (p95 of requests
        doubled in ``load_tests/capture_cost``)."""
        timeout = self._config.drift.send_timeout_s
        assert self._loop is not None  # set before the capture queue exists
        asyncio.run_coroutine_threadsafe(self._send_rows(rows, timeout), self._loop).result(
            timeout + 1
        )

    async def _send_rows(self, rows: list[dict[str, Any]], timeout: float) -> None:
        monitor = self._monitor or await asyncio.to_thread(self._get_monitor)
        if monitor is None:
            raise ServiceUnavailable("no drift monitor is running")
        try:
            await asyncio.wait_for(monitor.ingest.remote(rows), timeout)
        except Exception:
            self._monitor = None  # look it up again: Ray may have restarted it
            raise

    def _capture_rows(
        self,
        nodes: tuple[tuple[str, str, str], ...],
        value: Any,
        raw: dict[str, Any],
        versions: dict[str, int],
        source: str,
        request_id: str,
    ) -> None:
        if self._capture is None or not nodes:
            return
        self._capture.submit(
            CaptureJob(nodes, value, dict(raw), dict(versions), source, request_id, time.time())
        )

    # --- helpers -------------------------------------------------------------------------

    def _handle(self, model: str, version: int) -> Any:
        from deployments.base import deployment_name

        key = (model, version)
        handle = self._handles.get(key)
        if handle is None:
            name = deployment_name(model, version)
            handle = serve.get_deployment_handle(name, app_name=name)
            self._handles[key] = handle
        return handle

    def _ok(self, body: dict[str, Any], request_id: str, decision: RoutingDecision) -> JSONResponse:
        versions = decision.versions()
        routing = {
            m: {
                "version": d.version,
                "arm": d.arm,
                "pinned": d.pinned,
                "weight": d.weight,
                "sticky": d.sticky,
                "fallback": d.fallback,
                "shadowed": d.shadow_version is not None,
            }
            for m, d in decision.per_model.items()
        }
        body = {"request_id": request_id, "model_versions": versions, "routing": routing, **body}
        return JSONResponse(body, headers={"X-Model-Versions": versions_header(versions)})

    # --- access control and audit ---------------------------------------------------------

    def _access(self, request: Request, role: str) -> Any:
        """The caller's principal if it may use a route that needs ``role`` (else 401/403)."""
        policy = self._config.auth
        path = self._keys_path()
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            stamp = None
        if self._keys is None or stamp != self._keys_stamp:
            # Keys added or revoked (HTTP or CLI) take effect on the next request.
            self._keys = ApiKeyStore.load(path, os.environ)
            self._keys_stamp = stamp
        host = request.client.host if request.client else None
        principal = check_access(policy, self._keys, request.headers, host, role)
        request.state.caller = principal.name if principal.key_id else (host or "unknown")
        return principal

    def _audit_request(
        self,
        request: Request,
        route: str,
        request_id: str,
        status: int,
        code: str | None,
        latency_ms: float,
    ) -> None:
        if self._audit is None:
            return
        state = request.state
        decision: RoutingDecision | None = getattr(state, "decision", None)
        key = getattr(state, "sticky_key", None)
        nodes = {}
        if decision is not None:
            for model, d in decision.per_model.items():
                nodes[model] = node_entry(
                    d.version,
                    d.arm,
                    d.weight,
                    sticky_key=key if d.sticky else None,
                    pinned=d.pinned,
                    shadowed=d.shadow_version is not None,
                    fallback=d.fallback,
                )
        raw: bytes | None = getattr(state, "input_bytes", None)
        sha = sha256_hex(raw) if raw is not None else None
        self._audit.submit(
            RequestRecord(
                request_id=request_id,
                ts=time.time(),
                caller=getattr(state, "caller", None)
                or (request.client.host if request.client else "unknown"),
                route=route,
                pipeline=route.split(":", 1)[1] if route.startswith("pipeline:") else None,
                input_sha256=sha,
                input_bytes=len(raw) if raw is not None else None,
                nodes=nodes,
                output_summary=getattr(state, "summary", {}),
                latency_ms=round(latency_ms, 2),
                status=status,
                error_code=code,
            )
        )
        if raw is not None and sha is not None and self._config.audit.store_inputs:
            self._audit.submit_input(sha, raw)

    def _audit_admin(self, who: str, action: str, target: str, outcome: str, **detail: Any) -> None:
        if self._audit is None:
            return
        self._audit.submit(
            AdminRecord(
                ts=time.time(),
                actor=who,
                action=action,
                target=target,
                detail=detail,
                outcome=outcome,
            )
        )

    async def _audited(
        self,
        actor: str,
        action: str,
        target: str,
        work: Any,
        *,
        done_target: Callable[[Any], str] | None = None,
        done_detail: Callable[[Any], dict[str, Any]] | None = None,
        **detail: Any,
    ) -> Any:
        """Await an admin action and audit its outcome, with who did it: the error code (and
        the error goes on to the caller) or "ok" (the target and detail may come from the
        result, e.g. the id of the rollout it started)."""
        try:
            out = await work
        except CanaryError as e:
            self._audit_admin(actor, action, target, e.code, **detail)
            raise
        if done_detail is not None:
            detail = {**detail, **done_detail(out)}
        self._audit_admin(
            actor, action, done_target(out) if done_target else target, "ok", **detail
        )
        return out

    async def _timed(self, route: str, request: Request, work) -> JSONResponse:  # type: ignore[no-untyped-def]
        """Auth, admission control, then ``work``; every outcome is measured and audited."""
        self._ensure_background()
        request_id = _request_id(request)
        request.state.request_id = request_id
        t0 = time.perf_counter()
        versions: dict[str, int] = {}
        spec = self._config.ingress
        total = sum(self._in_flight.values())
        admitted = False
        try:
            self._access(request, "infer")
            admitted = total < spec.max_in_flight
            if not admitted:
                metrics.count_rejected(route)
                raise Overloaded(
                    f"{total} requests in flight on this replica (limit {spec.max_in_flight}); "
                    f"retry after {spec.retry_after_s:g}s",
                    retry_after_s=spec.retry_after_s,
                )
            self._in_flight[route] = self._in_flight.get(route, 0) + 1
            metrics.set_in_flight(route, self._replica, self._in_flight[route])
            response = await work(request_id, versions)
        except Exception as exc:
            response = error_response(exc, request_id, id_header=False)
        finally:
            if admitted:
                self._in_flight[route] -= 1
                metrics.set_in_flight(route, self._replica, self._in_flight[route])
        code = "ok"
        if response.status_code >= 400:
            code = json.loads(bytes(response.body)).get("error", {}).get("code", "error")
        seconds = time.perf_counter() - t0
        metrics.observe_request(route, response.status_code, code, seconds, versions)
        self._audit_request(
            request,
            route,
            request_id,
            response.status_code,
            None if code == "ok" else code,
            seconds * 1000,
        )
        return response

    def _decide(self, request: Request, models: list[str], pins: dict[str, int]) -> RoutingDecision:
        """The one routing decision of a request (sticky key: header, else client address)."""
        key = request.headers.get(KEY_HEADER) or (request.client.host if request.client else None)
        request.state.sticky_key = key
        decision = self._canary.decide(models, pins, key)
        request.state.decision = decision
        return decision

    async def _routed(
        self,
        request: Request,
        decision: RoutingDecision,
        run: Any,
        versions_out: dict[str, int],
        timeout_s: float,
    ) -> tuple[Any, RoutingDecision]:
        """Run on the decided versions within ``timeout_s`` (else 504 request_timeout); on a
        challenger failure re-run all on champions. The decision that answered is the one the
        audit record shows."""

        async def attempt() -> tuple[Any, RoutingDecision]:
            nonlocal decision
            versions_out.update(decision.versions())
            try:
                return await run(decision), decision
            except ChallengerFailed as failure:
                log.warning(
                    "request %s: challenger %s v%s failed; re-running on champions",
                    request.state.request_id,
                    failure.model,
                    failure.version,
                )
                decision = decision.with_champions()
                versions_out.clear()
                versions_out.update(decision.versions())
                return await run(decision), decision

        try:
            out, decision = await asyncio.wait_for(attempt(), timeout_s)
        except TimeoutError:
            raise RequestTimeout(f"the request exceeded its {timeout_s:g}s timeout") from None
        request.state.decision = decision
        return out, decision

    # --- routes ----------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def root(self) -> RedirectResponse:
        return RedirectResponse("/docs")

    @app.get("/healthz", summary="Liveness: the ingress answers.")
    async def healthz(self) -> dict[str, str]:
        self._ensure_background()
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: every model's champion answers.")
    async def readyz(self) -> JSONResponse:
        """Ready when each model's champion answers (the version every request can fall back
        to). Other versions are listed too, but a challenger that is failing or being drained
        after a rollback must not take the whole ingress out of its load balancer: its breaker
        and the champion fallback already keep requests off it."""
        self._ensure_background()
        checks: dict[str, str] = {}
        routes = self._canary.routes
        wanted = {m: set(v) for m, v in self._canary.running.items()}
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
                    await asyncio.wait_for(self._handle(model, version).info.remote(), timeout=5)
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

    @app.get("/v1/pipelines", summary="Configured pipelines and their DAGs.")
    async def list_pipelines(self) -> dict[str, Any]:
        return {
            "pipelines": {
                name: {
                    "input": p.input,
                    "description": p.description,
                    "nodes": [n.model_dump() for n in p.nodes],
                    "output": p.output,
                    "models": models_of(p),
                }
                for name, p in self._config.pipelines.items()
            }
        }

    @app.post(
        "/v1/pipelines/{name}",
        summary="Run a pipeline on an image or a clip.",
        openapi_extra={"requestBody": _ANY_BODY},
    )
    async def run_pipeline_route(self, name: str, request: Request) -> JSONResponse:
        async def work(request_id: str, versions: dict[str, int]) -> JSONResponse:
            spec = self._config.pipelines.get(name)
            if spec is None:
                raise UnknownPipeline(
                    f"pipeline {name!r} does not exist; pipelines: {sorted(self._config.pipelines)}"
                )
            # Decided before the body is read: an unknown model or pin is a 4xx at once.
            decision = self._decide(
                request, models_of(spec), parse_pins(request.headers.get(PIN_HEADER))
            )
            limits = self._config.limits
            if spec.input == "image":
                value, raw_bytes = await read_image(request, limits)
                meta: dict[str, Any] = {
                    "image": {"width": value.shape[1], "height": value.shape[0]}
                }
            else:
                value, raw_bytes = await read_clip(request, limits)
                meta = {
                    "clip": {
                        "frames": len(value.frames),
                        "fps": value.fps,
                        "width": value.size[0],
                        "height": value.size[1],
                    }
                }

            async def execute(
                versions_: dict[str, int],
                raw: dict[str, Any],
                decision: RoutingDecision,
                shadow: bool = False,
            ) -> Any:
                call = self._canary.caller(
                    decision, self._handle, request_id, shadow=shadow, versions=versions_
                )
                return await run_pipeline(spec, value, call, raw)

            primary_raw: dict[str, Any] = {}

            async def run(decision: RoutingDecision) -> Any:
                primary_raw.clear()
                return await execute(decision.versions(), primary_raw, decision)

            t0 = time.perf_counter()
            result, decision = await self._routed(request, decision, run, versions, spec.timeout_s)
            meta["latency_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            request.state.input_bytes = raw_bytes
            request.state.summary = {
                k: len(v) if isinstance(v, list) else v for k, v in result.items()
            }
            confidences, alerts = result_kpis(spec, primary_raw)
            metrics.observe_results(name, confidences, alerts)
            nodes = self._model_nodes[name]

            def capture_shadow(
                mine: tuple[tuple[str, str, str], ...], versions_: dict[str, int], raw: Any
            ) -> None:
                self._capture_rows(mine, value, raw, versions_, "shadow", request_id)

            self._canary.maybe_shadow(
                decision,
                lambda m: tuple(n for n in nodes if n[1] == m),
                primary_raw,
                lambda v, raw: execute(v, raw, decision, shadow=True),
                capture_shadow,
            )
            self._capture_rows(nodes, value, primary_raw, decision.versions(), "live", request_id)
            return self._ok(
                {"pipeline": name, "result": result, "input": meta}, request_id, decision
            )

        return await self._timed(
            metrics.route_label("pipeline", name, self._config.pipelines), request, work
        )

    @app.post(
        "/v1/models/{name}:predict",
        summary="Run one model version on one input.",
        openapi_extra={"requestBody": _IMAGE_BODY},
    )
    async def predict(
        self, name: str, request: Request, version: int | None = None
    ) -> JSONResponse:
        async def work(request_id: str, versions: dict[str, int]) -> JSONResponse:
            pins = parse_pins(request.headers.get(PIN_HEADER))
            if version is not None:
                pins[name] = version
            decision = self._decide(request, [name], pins)  # unknown model/version: 4xx first
            task = self._config.models[name].task
            if task == "action":
                raise InvalidInput(
                    "the action model takes tracks; run it through a clip "
                    "pipeline (POST /v1/pipelines/clip)"
                )
            image, raw_bytes = await read_image(request, self._config.limits)
            request.state.input_bytes = raw_bytes
            kind = "detections" if task == "detection" else "text"

            async def run(d: RoutingDecision) -> Any:
                (out,) = await self._canary.caller(d, self._handle, request_id)(name, [image])
                return out

            out, decision = await self._routed(
                request, decision, run, versions, self._config.ingress.request_timeout_s
            )
            request.state.summary = {kind: len(out)}
            scores = [d.score for d in out] if kind == "detections" else [x.confidence for x in out]
            metrics.observe_results(f"model:{name}", scores, [])
            self._capture_rows(
                (("model", name, kind),),
                image,
                {"model": out},
                decision.versions(),
                "live",
                request_id,
            )
            return self._ok(
                {
                    "model": name,
                    "version": decision.versions()[name],
                    "result": {kind: to_json(kind, out)},
                },
                request_id,
                decision,
            )

        return await self._timed(
            metrics.route_label("model", name, self._config.models), request, work
        )

    @app.get("/v1/models", summary="Registered versions, aliases, and what is served.")
    async def list_models(self, request: Request) -> dict[str, Any]:
        self._ensure_background()
        self._access(request, "infer")
        registry = await asyncio.to_thread(self._registry_view)
        served: dict[str, Any] = {}
        for model, versions in self._canary.running.items():
            route = self._canary.routes.get(model)
            entry: dict[str, Any] = {
                "default_version": route.champion if route else None,
                "challenger": route.challenger if route else None,
                "weight": route.weight if route else 0.0,
                "versions": {},
            }
            for version in versions:
                try:
                    info = await asyncio.wait_for(
                        self._handle(model, version).info.remote(), timeout=10
                    )
                except Exception:
                    info = {"status": "unavailable"}
                entry["versions"][str(version)] = info
            served[model] = entry
        return {"registry": registry, "served": served}

    def _registry_view(self) -> dict[str, Any]:
        store = self._store()
        out: dict[str, Any] = {}
        for name, versions in store.list_models().items():
            out[name] = {
                "aliases": store.aliases(name),
                "versions": [
                    {
                        "version": v.version,
                        "aliases": list(v.aliases),
                        "description": v.description,
                        "tags": {
                            k: val
                            for k, val in v.tags.items()
                            if k.startswith("canaryserve.")
                            and not k.startswith("canaryserve.sha256")
                        },
                    }
                    for v in versions
                ],
            }
        return out

    # --- rollouts (admin) ------------------------------------------------------------------

    async def _admin(self, method: str, *args: Any) -> Any:
        controller = await asyncio.to_thread(self._get_controller)
        if controller is None:
            raise ServiceUnavailable("the rollout controller is not running")
        try:
            return await controller.call.remote(method, *args)
        except Exception as e:
            reraise_cause(e)
            self._controller = None
            raise ServiceUnavailable("the rollout controller did not answer") from e

    async def _drift(self, method: str, *args: Any, **kw: Any) -> Any:
        monitor = await asyncio.to_thread(self._get_monitor)
        if monitor is None:
            raise ServiceUnavailable("the drift monitor is not running")
        try:
            return await monitor.call.remote(method, *args, **kw)
        except Exception as e:
            reraise_cause(e)
            self._monitor = None
            raise ServiceUnavailable("the drift monitor did not answer") from e

    def _actor(self, request: Request, principal: Any = None) -> str:
        """Who did it: the API key's name; without auth, X-Actor or the client address."""
        if principal is not None and principal.key_id:
            return str(principal.name)
        return request.headers.get("x-actor") or (
            request.client.host if request.client else "unknown"
        )

    @app.get("/v1/rollouts", summary="Rollouts (all, or only active ones).")
    async def list_rollouts(self, request: Request, active: bool = False) -> dict[str, Any]:
        self._access(request, "operator")
        return {"rollouts": await self._admin("list", active)}

    @app.post("/v1/rollouts", summary="Start a rollout of a challenger version.", status_code=201)
    async def start_rollout(self, request: Request) -> JSONResponse:
        who = self._access(request, "operator")
        spec = await self._json_body(request, "the rollout spec")
        if not isinstance(spec, dict):
            raise InvalidInput("the rollout spec must be a JSON object")
        actor = self._actor(request, who)
        out = await self._audited(
            actor,
            "rollout.start",
            str(spec.get("model")),
            self._admin("start", spec, actor),
            done_target=lambda out: out["id"],
            spec=spec,
        )
        return JSONResponse(out, status_code=201)

    @app.get("/v1/rollouts/{rollout_id}", summary="One rollout with its events.")
    async def get_rollout(self, rollout_id: str, request: Request) -> dict[str, Any]:
        self._access(request, "operator")
        return await self._admin("describe", rollout_id)

    @app.post(
        "/v1/rollouts/{rollout_id}/{action}", summary="pause | resume | promote | abort a rollout."
    )
    async def rollout_action(
        self, rollout_id: str, action: str, request: Request
    ) -> dict[str, Any]:
        who = self._access(request, "operator")
        if action not in ROLLOUT_ACTIONS:
            raise InvalidInput(f"unknown action {action!r}; one of {list(ROLLOUT_ACTIONS)}")
        actor = self._actor(request, who)
        return await self._audited(
            actor, f"rollout.{action}", rollout_id, self._admin(action, rollout_id, actor)
        )

    # --- drift -------------------------------------------------------------------------------

    @app.get("/v1/drift", summary="Latest drift verdict per model version, and alerts.")
    async def drift_status(self, request: Request) -> dict[str, Any]:
        self._ensure_background()
        self._access(request, "operator")
        status = await self._drift("status")
        q = self._capture
        status["capture"] = (
            {
                "pending": q.pending,
                "sent_rows": q.sent_rows,
                "dropped_rows": q.dropped_rows,
                "failed_batches": q.failed_batches,
            }
            if q is not None
            else {"enabled": False}
        )
        return status

    @app.get("/v1/drift/reports", summary="Drift reports, newest first.")
    async def drift_reports(
        self,
        request: Request,
        model: str | None = None,
        version: str | None = None,
        kind: str | None = None,
        limit: int = Query(default=50, ge=1, le=1000),
    ) -> dict[str, Any]:
        self._access(request, "operator")
        reports = await self._drift(
            "list_reports", model=model, version=version, kind=kind, limit=limit
        )
        return {"reports": reports}

    @app.post("/v1/drift/reports", summary="Run a drift report now.", status_code=201)
    async def drift_report_now(self, request: Request) -> JSONResponse:
        self._access(request, "operator")
        try:
            body = await request.json()
        except Exception:
            raise InvalidInput(
                'the body must be a JSON object like {"model": "detector"}'
            ) from None
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) or model not in self._config.models:
            raise UnknownModel(
                f"model {model!r} is not served; models: {sorted(self._config.models)}"
            )
        version = body.get("version")
        if version is None:
            route = self._canary.routes.get(model)
            version = route.champion if route is not None else None
        if isinstance(version, bool) or not str(version).isdigit():
            raise InvalidInput(f"version must be a version number, got {version!r}")
        report = await self._drift("report", model, int(version))
        return JSONResponse(report, status_code=201)

    @app.get(
        "/v1/drift/reports/{report_id}",
        summary="One drift report: the Evidently HTML (or its record with ?format=json).",
        response_class=HTMLResponse,
    )
    async def drift_report(self, report_id: str, request: Request, format: str = "html") -> Any:
        self._access(request, "operator")
        if format == "json":
            return JSONResponse(await self._drift("get_report", report_id))
        if format != "html":
            raise InvalidInput(f"format must be 'html' or 'json', got {format!r}")
        return HTMLResponse(await self._drift("report_html", report_id))

    # --- audit -------------------------------------------------------------------------------

    def _audit_store(self) -> Any:
        if self._audit is None:
            raise ServiceUnavailable("the audit trail is disabled in the config")
        return self._audit.store

    @app.get("/v1/audit/{request_id}", summary="The audit record of one served request.")
    async def audit_record(self, request_id: str, request: Request) -> dict[str, Any]:
        self._ensure_background()
        self._access(request, "operator")
        store = self._audit_store()
        record = await asyncio.to_thread(store.get_request, request_id)
        if record is None:
            # Records are written in batches off the request path: give it a moment.
            await asyncio.to_thread(self._audit.flush, 2.0)
            record = await asyncio.to_thread(store.get_request, request_id)
        if record is None:
            raise UnknownAuditRecord(f"no audit record for request {request_id!r}")
        return record

    @app.get("/v1/audit", summary="Audit records (requests and admin actions), newest first.")
    async def audit_query(
        self,
        request: Request,
        since: float | None = None,
        model: str | None = None,
        version: int | None = None,
        caller: str | None = None,
        error_code: str | None = None,
        limit: int = Query(default=100, ge=1, le=10_000),
    ) -> dict[str, Any]:
        self._ensure_background()
        self._access(request, "operator")
        store = self._audit_store()
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

    # --- admin: API keys and model registration --------------------------------------------

    def _keys_path(self) -> Path:
        return Path(self._config.auth.keys_file_in(Path(self._registry["data_dir"])))

    @app.get("/v1/keys", summary="API keys (names, roles, ids; never secrets or hashes).")
    async def keys_list(self, request: Request) -> dict[str, Any]:
        self._access(request, "admin")
        return {"keys": await asyncio.to_thread(list_keys, self._keys_path())}

    @app.post("/v1/keys", summary="Create an API key; the key is in this answer only.")
    async def keys_create(self, request: Request) -> JSONResponse:
        who = self._access(request, "admin")
        body = await self._json_body(request, "the key request")
        target = str(body.get("name")) if isinstance(body, dict) else "?"
        out = await self._audited(
            self._actor(request, who),
            "keys.add",
            target,
            asyncio.to_thread(admin.create_key, self._keys_path(), body),
            done_detail=lambda out: {"role": out["role"], "id": out["id"]},
        )
        return JSONResponse(out, status_code=201)

    @app.delete("/v1/keys/{name_or_id}", summary="Revoke an API key.")
    async def keys_revoke(self, name_or_id: str, request: Request) -> dict[str, Any]:
        who = self._access(request, "admin")
        await self._audited(
            self._actor(request, who),
            "keys.revoke",
            name_or_id,
            asyncio.to_thread(admin.delete_key, self._keys_path(), name_or_id),
        )
        return {"revoked": name_or_id}

    @app.post(
        "/v1/models/{name}/versions",
        summary="Check and register a model directory the platform can read as a new version.",
    )
    async def model_register(self, name: str, request: Request) -> JSONResponse:
        who = self._access(request, "admin")
        body = await self._json_body(request, "the registration")
        out = await self._audited(
            self._actor(request, who),
            "model.register",
            name,
            asyncio.to_thread(admin.register, self._store(), name, body),
            done_target=lambda out: f"{name}/{out['version']}",
            body=body,
        )
        return JSONResponse(out, status_code=201)

    async def _json_body(self, request: Request, what: str) -> Any:
        try:
            return await request.json()
        except Exception:
            raise InvalidInput(f"{what} must be a JSON object") from None

    @app.get(
        "/metrics",
        summary="Prometheus metrics of every replica (canaryserve_*).",
        response_class=PlainTextResponse,
    )
    async def metrics_route(self) -> PlainTextResponse:
        text = await asyncio.to_thread(metrics.scrape_cluster)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
