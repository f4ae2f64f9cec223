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
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving import metrics
from serving.config import PlatformConfig
from serving.errors import CanaryError, InvalidInput, ModelFailure, UnknownPipeline
from serving.ops import to_json
from serving.pipeline import models_of, run_pipeline
from serving.requests import read_clip, read_image
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
        status, code, message = 504, "timeout", _generic(504)
    else:
        status, code, message = 500, "internal_error", _generic(500)
    if status >= 500:
        log.error("request %s failed with %s: %r", request_id, code, exc)
    headers = {"X-Request-Id": request_id} if id_header else {}
    if status in (503, 429):
        headers["Retry-After"] = "1"
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


@app.exception_handler(RequestValidationError)
async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(exc, _request_id(request), id_header=False)


@app.exception_handler(StarletteHTTPException)
async def _on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error_response(exc, _request_id(request), id_header=False)


@serve.deployment(max_ongoing_requests=64)
@serve.ingress(app)
class Ingress:
    def __init__(
        self,
        config: PlatformConfig,
        handles: dict[str, dict[int, Any]],
        table: VersionTable,
        registry: dict[str, str],
    ) -> None:
        self._config = config
        self._handles = handles
        self._table = table
        self._registry = registry
        self._infos: dict[str, Any] = {}

    # --- helpers -------------------------------------------------------------------------

    def _caller(self, versions: dict[str, int], request_id: str):  # type: ignore[no-untyped-def]
        handles = self._handles

        async def call(model: str, items: list[Any]) -> list[Any]:
            version = versions[model]
            handle = handles[model][version]
            try:
                return list(await asyncio.gather(*(handle.predict.remote(x) for x in items)))
            except CanaryError:
                raise
            except Exception as e:
                log.error("request %s: %s v%s failed: %r", request_id, model, version, e)
                raise ModelFailure(f"{model} v{version} failed") from e

        return call

    def _ok(self, body: dict[str, Any], request_id: str, versions: dict[str, int]) -> JSONResponse:
        body = {"request_id": request_id, "model_versions": versions, **body}
        return JSONResponse(body, headers={"X-Model-Versions": versions_header(versions)})

    async def _timed(self, route: str, request: Request, work) -> JSONResponse:  # type: ignore[no-untyped-def]
        request_id = _request_id(request)
        request.state.request_id = request_id
        t0 = time.perf_counter()
        versions: dict[str, int] = {}
        try:
            response = await work(request_id, versions)
        except Exception as exc:
            response = error_response(exc, request_id, id_header=False)
        code = "ok"
        if response.status_code >= 400:
            code = json.loads(bytes(response.body)).get("error", {}).get("code", "error")
        metrics.observe_request(
            route, response.status_code, code, time.perf_counter() - t0, versions
        )
        return response

    # --- routes ----------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def root(self) -> RedirectResponse:
        return RedirectResponse("/docs")

    @app.get("/healthz", summary="Liveness: the ingress answers.")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: every served model version answers.")
    async def readyz(self) -> JSONResponse:
        checks: dict[str, str] = {}
        for model, by_version in self._handles.items():
            for version, handle in by_version.items():
                key = f"{model}-v{version}"
                try:
                    await asyncio.wait_for(handle.info.remote(), timeout=5)
                    checks[key] = "ready"
                except Exception:
                    checks[key] = "unavailable"
        ready = all(v == "ready" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "deployments": checks},
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
            versions.update(
                self._table.choose(models_of(spec), parse_pins(request.headers.get(PIN_HEADER)))
            )
            limits = self._config.limits
            if spec.input == "image":
                value, _raw = await read_image(request, limits)
                meta: dict[str, Any] = {
                    "image": {"width": value.shape[1], "height": value.shape[0]}
                }
            else:
                value, _raw = await read_clip(request, limits)
                meta = {
                    "clip": {
                        "frames": len(value.frames),
                        "fps": value.fps,
                        "width": value.size[0],
                        "height": value.size[1],
                    }
                }
            t0 = time.perf_counter()
            result = await asyncio.wait_for(
                run_pipeline(spec, value, self._caller(versions, request_id)), spec.timeout_s
            )
            meta["latency_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            return self._ok(
                {"pipeline": name, "result": result, "input": meta}, request_id, versions
            )

        return await self._timed(f"pipeline:{name}", request, work)

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
            versions.update(self._table.choose([name], pins))
            task = self._config.models[name].task
            if task == "action":
                raise InvalidInput(
                    "the action model takes tracks; run it through a clip "
                    "pipeline (POST /v1/pipelines/clip)"
                )
            image, _raw = await read_image(request, self._config.limits)
            (out,) = await self._caller(versions, request_id)(name, [image])
            kind = "detections" if task == "detection" else "text"
            return self._ok(
                {"model": name, "version": versions[name], "result": {kind: to_json(kind, out)}},
                request_id,
                versions,
            )

        return await self._timed(f"model:{name}", request, work)

    @app.get("/v1/models", summary="Registered versions, aliases, and what is served.")
    async def list_models(self) -> dict[str, Any]:
        registry = await asyncio.to_thread(self._registry_view)
        served: dict[str, Any] = {}
        for model, by_version in self._handles.items():
            served[model] = {"default_version": self._table.default[model], "versions": {}}
            for version, handle in by_version.items():
                try:
                    info = await asyncio.wait_for(handle.info.remote(), timeout=10)
                except Exception:
                    info = {"status": "unavailable"}
                served[model]["versions"][str(version)] = info
        return {"registry": registry, "served": served}

    def _registry_view(self) -> dict[str, Any]:
        from model_registry.mlflow_store import MlflowModelStore

        store = MlflowModelStore(
            tracking_uri=self._registry["tracking_uri"],
            models_dir=Path(self._registry["data_dir"]) / "models",
        )
        out: dict[str, Any] = {}
        for name, versions in store.list_models().items():
            out[name] = {
                "aliases": store.aliases(name),
                "versions": [
                    {
                        "version": v.version,
                        "aliases": list(v.aliases),
                        "description": v.description,
                        "source": {
                            k: val
                            for k, val in v.tags.items()
                            if k.startswith("canaryserve.source")
                        },
                    }
                    for v in versions
                ],
            }
        return out

    @app.get(
        "/metrics",
        summary="Prometheus metrics of every replica (canaryserve_*).",
        response_class=PlainTextResponse,
    )
    async def metrics_route(self) -> PlainTextResponse:
        text = await asyncio.to_thread(metrics.scrape_cluster)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
