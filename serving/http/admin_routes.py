"""Routes for ML engineers and admins: rollouts (operator), API keys and registration (admin).

Every action is audited with who did it (``Gate.audited``); what the action does lives in the
rollout controller (``serving.rollouts``) or in ``serving.access.admin``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from drift.reference.baseline import BaselineRequest
from serving.access import admin, list_keys
from serving.errors import InvalidBaseline, InvalidInput, UnknownModel, validation_lines
from serving.http.bodies import json_body
from serving.http.services import Services

ROLLOUT_ACTIONS = ("pause", "resume", "promote", "abort")


def admin_routes(svc: Services) -> APIRouter:
    router = APIRouter()
    gate = svc.gate

    @router.get("/v1/rollouts", summary="Rollouts (all, or only active ones).")
    async def list_rollouts(request: Request, active: bool = False) -> dict[str, Any]:
        await gate.access(request, "operator")
        return {"rollouts": await svc.controller.call("list", active)}

    @router.post(
        "/v1/rollouts", summary="Start a rollout of a challenger version.", status_code=201
    )
    async def start_rollout(request: Request) -> JSONResponse:
        who = await gate.access(request, "operator")
        spec = await json_body(request, "the rollout spec")
        if not isinstance(spec, dict):
            raise InvalidInput("the rollout spec must be a JSON object")
        actor = gate.actor(request, who)
        out = await gate.audited(
            actor,
            "rollout.start",
            str(spec.get("model")),
            svc.controller.call("start", spec, actor),
            done_target=lambda out: str(out["id"]),
            spec=spec,
        )
        return JSONResponse(out, status_code=201)

    @router.get("/v1/rollouts/{rollout_id}", summary="One rollout with its events.")
    async def get_rollout(rollout_id: str, request: Request) -> dict[str, Any]:
        await gate.access(request, "operator")
        out: dict[str, Any] = await svc.controller.call("describe", rollout_id)
        return out

    @router.post(
        "/v1/rollouts/{rollout_id}/{action}", summary="pause | resume | promote | abort a rollout."
    )
    async def rollout_action(rollout_id: str, action: str, request: Request) -> dict[str, Any]:
        who = await gate.access(request, "operator")
        if action not in ROLLOUT_ACTIONS:
            raise InvalidInput(f"unknown action {action!r}; one of {list(ROLLOUT_ACTIONS)}")
        actor = gate.actor(request, who)
        out: dict[str, Any] = await gate.audited(
            actor,
            f"rollout.{action}",
            rollout_id,
            svc.controller.call(action, rollout_id, actor),
        )
        return out

    @router.post(
        "/v1/drift/baselines",
        summary="Freeze a version's drift reference from its live traffic or a folder of images.",
        status_code=201,
    )
    async def drift_baseline(request: Request) -> JSONResponse:
        who = await gate.access(request, "operator")
        body = await json_body(request, "the baseline request")
        if not isinstance(body, dict):
            raise InvalidBaseline(
                'the body must be a JSON object like {"model": "detector", "rows": 500}'
            )
        if body.get("source") == "dir":
            # A folder is read on the platform's machine: that takes the admin role, as
            # registering a model directory does; traffic baselines are an operator's call.
            who = await gate.access(request, "admin")
        model = body.get("model")
        if not isinstance(model, str) or model not in svc.config.models:
            raise UnknownModel(
                f"model {model!r} is not served; models: {sorted(svc.config.models)}"
            )
        if body.get("version") is None:
            route = svc.plane.canary.routes.get(model)
            if route is None or route.champion is None:
                raise InvalidBaseline(f"{model} has no champion; give a version")
            body = {**body, "version": route.champion}
        try:
            baseline = BaselineRequest.model_validate(body)
        except ValidationError as e:
            raise InvalidBaseline("; ".join(validation_lines(e))) from None
        target = f"{baseline.model}/{baseline.version}"
        out = await gate.audited(
            gate.actor(request, who),
            "drift.baseline",
            target,
            svc.monitor.direct("baseline", baseline),
            done_detail=lambda out: {"reference": out["reference"].get("n")},
            body=baseline.model_dump(exclude_none=True),
        )
        return JSONResponse(out, status_code=201)

    @router.get("/v1/keys", summary="API keys (names, roles, ids; never secrets or hashes).")
    async def keys_list(request: Request) -> dict[str, Any]:
        await gate.access(request, "admin")
        return {"keys": await asyncio.to_thread(list_keys, gate.keys_path)}

    @router.post("/v1/keys", summary="Create an API key; the key is in this answer only.")
    async def keys_create(request: Request) -> JSONResponse:
        who = await gate.access(request, "admin")
        body = await json_body(request, "the key request")
        target = str(body.get("name")) if isinstance(body, dict) else "?"
        out = await gate.audited(
            gate.actor(request, who),
            "keys.add",
            target,
            asyncio.to_thread(admin.create_key, gate.keys_path, body),
            done_detail=lambda out: {"role": out["role"], "id": out["id"]},
        )
        return JSONResponse(out, status_code=201)

    @router.delete("/v1/keys/{name_or_id}", summary="Revoke an API key.")
    async def keys_revoke(name_or_id: str, request: Request) -> dict[str, Any]:
        who = await gate.access(request, "admin")
        await gate.audited(
            gate.actor(request, who),
            "keys.revoke",
            name_or_id,
            asyncio.to_thread(admin.delete_key, gate.keys_path, name_or_id),
        )
        return {"revoked": name_or_id}

    @router.post(
        "/v1/models/{name}/versions",
        summary="Check and register a model directory the platform can read as a new version.",
    )
    async def model_register(name: str, request: Request) -> JSONResponse:
        who = await gate.access(request, "admin")
        body = await json_body(request, "the registration")
        out = await gate.audited(
            gate.actor(request, who),
            "model.register",
            name,
            asyncio.to_thread(admin.register, svc.store(), name, body),
            done_target=lambda out: f"{name}/{out['version']}",
            body=body,
        )
        return JSONResponse(out, status_code=201)

    return router
