"""Routes for applications: run a pipeline or one model, and see what is served.

Each inference handler is three steps: the gate gives the request's context (or its 401/403),
the data plane serves it, the gate answers, measures and audits the outcome.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from model_registry.mlflow_layout import TAG_LAYOUT
from serving import metrics
from serving.http.bodies import ANY_BODY, IMAGE_BODY, RequestInput
from serving.http.services import Services
from serving.inference import Outcome
from serving.pipelines.executor import models_of


def inference_routes(svc: Services) -> APIRouter:
    router = APIRouter()
    config = svc.config

    @router.get("/v1/pipelines", summary="Configured pipelines and their DAGs.")
    async def list_pipelines() -> dict[str, Any]:
        return {
            "pipelines": {
                name: {
                    "input": p.input,
                    "description": p.description,
                    "nodes": [n.model_dump() for n in p.nodes],
                    "output": p.output,
                    "models": models_of(p),
                }
                for name, p in config.pipelines.items()
            }
        }

    @router.post(
        "/v1/pipelines/{name}",
        summary="Run a pipeline on an image or a clip.",
        openapi_extra={"requestBody": ANY_BODY},
    )
    async def run_pipeline_route(name: str, request: Request) -> JSONResponse:
        route = metrics.route_label("pipeline", name, config.pipelines)
        ctx, refused = await svc.gate.inference(request, route)
        spec = config.pipelines.get(name)
        source = RequestInput(
            request, config.limits, "clip" if spec and spec.input == "frames" else "image"
        )
        if spec is not None:  # an unknown pipeline is a 404 without reading the body
            refused = refused or await source.receive()
        outcome = Outcome(error=refused) if refused else await svc.plane.pipeline(ctx, name, source)
        return svc.gate.respond(ctx, outcome)

    @router.post(
        "/v1/models/{name}:predict",
        summary="Run one model version on one input.",
        openapi_extra={"requestBody": IMAGE_BODY},
    )
    async def predict(name: str, request: Request, version: int | None = None) -> JSONResponse:
        route = metrics.route_label("model", name, config.models)
        ctx, refused = await svc.gate.inference(request, route)
        source = RequestInput(request, config.limits)
        refused = refused or await source.receive()
        outcome = (
            Outcome(error=refused)
            if refused
            else await svc.plane.predict(ctx, name, version, source)
        )
        return svc.gate.respond(ctx, outcome)

    @router.get("/v1/models", summary="Registered versions, aliases, and what is served.")
    async def list_models(request: Request) -> dict[str, Any]:
        principal = await svc.gate.access(request, "infer")
        # Where a replica runs (artifact paths, pids, nodes, devices) is for operators: an
        # infer caller sees what it needs to call a version, no map of the cluster.
        full = svc.gate.may(request, principal, "operator")
        registry = await asyncio.to_thread(_registry_view, svc)
        canary = svc.plane.canary
        served: dict[str, Any] = {}
        for model, versions in canary.running.items():
            route = canary.routes.get(model)
            entry: dict[str, Any] = {
                "default_version": route.champion if route else None,
                "challenger": route.challenger if route else None,
                "weight": route.weight if route else 0.0,
                "versions": {},
            }
            for v in versions:
                try:
                    info = await asyncio.wait_for(svc.handles(model, v).info.remote(), timeout=10)
                except Exception:
                    info = {"status": "unavailable"}
                if not full:
                    info = {k: val for k, val in info.items() if k in PUBLIC_REPLICA_INFO}
                entry["versions"][str(v)] = info
            served[model] = entry
        return {"registry": registry, "served": served}

    return router


# What a replica's ``info()`` an infer-only caller may read on ``GET /v1/models``.
PUBLIC_REPLICA_INFO = frozenset(
    {"model", "version", "task", "keypoint_layout", "license", "labels", "status"}
)


def _registry_view(svc: Services) -> dict[str, Any]:
    store = svc.store()
    out: dict[str, Any] = {}
    for name, versions in store.list_models().items():
        out[name] = {
            "aliases": store.aliases(name),
            "versions": [
                {
                    "version": v.version,
                    "aliases": list(v.aliases),
                    "task": v.task,
                    # What a pipeline must pair it with (see deployments.models.keypoints).
                    "keypoint_layout": v.tags.get(TAG_LAYOUT),
                    "license": v.lineage.get("license"),
                    "description": v.description,
                    "tags": {
                        k: val
                        for k, val in v.tags.items()
                        if k.startswith("canaryserve.") and not k.startswith("canaryserve.sha256")
                    },
                }
                for v in versions
            ],
        }
    return out
