"""The data plane: one request, from the routing decision to one :class:`Outcome`.

Plain Python: the model deployments arrive as a handle source (``(model, version) ->
handle``), so unit tests drive it with real models and no Ray. For each request it

1. takes a replica slot (admission control),
2. makes the routing decision once (unknown model, version or pin: a 4xx before the body is
   read),
3. reads the input, runs the pipeline DAG (or the one model) on the decided versions within
   the route's timeout, and re-runs on the champions when a challenger fails,
4. mirrors the request to shadowed challengers, hands the inputs and outputs to drift capture,
5. and returns the answer or the error, with the decision that answered.

:func:`audit_record` turns a context and its outcome into the request's audit record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from deployments.images import image_size
from drift.capture import CaptureJob, CaptureQueue
from serving import metrics
from serving.audit import RequestRecord, node_entry, sha256_hex
from serving.canary.pins import parse_pins
from serving.canary.split import RoutingDecision
from serving.config import PlatformConfig
from serving.errors import ChallengerPinForbidden, InvalidInput, RequestTimeout, UnknownPipeline
from serving.inference.admission import Admission
from serving.inference.context import InputSource, Outcome, RequestContext
from serving.inference.routing import CanaryState, ChallengerFailed, HandleSource
from serving.inference.shadow import Shadows
from serving.pipelines.executor import (
    NodeKinds,
    PipelineRun,
    execute,
    model_node_kinds,
    models_of,
    result_kpis,
)
from serving.pipelines.ops import Clip, to_json
from serving.pipelines.spec import PipelineSpec

log = logging.getLogger("canaryserve.inference")


class DataPlane:
    def __init__(
        self,
        config: PlatformConfig,
        canary: CanaryState,
        handles: HandleSource,
        capture: CaptureQueue | None = None,
    ) -> None:
        self.config = config
        self.canary = canary
        self.handles = handles
        self.capture = capture
        self.admission = Admission(config.ingress)
        self.shadows = Shadows(canary, handles, capture)
        # (node, model, output kind) of every model node, per pipeline: fixed by the config.
        self._model_nodes = {n: model_node_kinds(p) for n, p in config.pipelines.items()}
        self._one_model = {
            m: _one_model(m, spec.task)
            for m, spec in config.models.items()
            if spec.task != "action"
        }

    # --- routes ------------------------------------------------------------------------------

    async def pipeline(self, ctx: RequestContext, name: str, source: InputSource) -> Outcome:
        """Run pipeline ``name`` on the request's image or clip."""
        decision: RoutingDecision | None = None
        data: bytes | None = None
        try:
            with self.admission.slot(ctx.route):
                spec = self.config.pipelines.get(name)
                if spec is None:
                    raise UnknownPipeline(
                        f"pipeline {name!r} does not exist; pipelines: "
                        f"{sorted(self.config.pipelines)}"
                    )
                decision = self.decide(ctx, models_of(spec), parse_pins(ctx.pin_header))
                value: Any
                t0 = time.perf_counter()
                if spec.input == "image":
                    value, data = await source.image()
                    width, height = image_size(value)
                    meta: dict[str, Any] = {"image": {"width": width, "height": height}}
                else:
                    value, data = await source.clip()
                    meta = {"clip": _clip_meta(value)}
                ctx.stages["parse"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                run, decision = await self._answer(ctx, spec, value, decision, spec.timeout_s)
                meta["latency_ms"] = round((time.perf_counter() - t0) * 1000, 1)
                confidences, alerts = result_kpis(spec, run.outputs)
                metrics.observe_results(name, confidences, alerts)
                nodes = self._model_nodes[name]
                self.shadows.mirror(ctx.request_id, spec, nodes, value, decision, run.outputs)
                self._capture(ctx, nodes, value, run.outputs, decision)
                summary = {k: len(v) if isinstance(v, list) else v for k, v in run.result.items()}
                body = {"pipeline": name, "result": run.result, "input": meta}
                return _answered(ctx, body, decision, data, summary)
        except Exception as e:
            return Outcome(error=e, decision=decision, input_bytes=data)

    async def predict(
        self, ctx: RequestContext, name: str, version: int | None, source: InputSource
    ) -> Outcome:
        """Run one model (its champion, or the pinned / ``version`` one) on one image."""
        decision: RoutingDecision | None = None
        data: bytes | None = None
        try:
            with self.admission.slot(ctx.route):
                pins = parse_pins(ctx.pin_header)
                if version is not None:
                    pins[name] = version
                decision = self.decide(ctx, [name], pins)  # unknown model/version: 4xx first
                task = self.config.models[name].task
                if task == "action":
                    raise InvalidInput(
                        "the action model takes tracks; run it through a clip "
                        "pipeline (POST /v1/pipelines/clip)"
                    )
                t0 = time.perf_counter()
                image, data = await source.image()
                ctx.stages["parse"] = time.perf_counter() - t0
                kind = "detections" if task == "detection" else "text"
                spec = self._one_model[name]
                timeout = self.config.ingress.request_timeout_s
                run, decision = await self._answer(ctx, spec, image, decision, timeout)
                out = run.outputs["model"]
                scores = (
                    [d.score for d in out] if kind == "detections" else [x.confidence for x in out]
                )
                metrics.observe_results(f"model:{name}", scores, [])
                self._capture(ctx, (("model", name, kind),), image, run.outputs, decision)
                body = {
                    "model": name,
                    "version": decision.versions()[name],
                    "result": {kind: to_json(kind, out)},
                }
                return _answered(ctx, body, decision, data, {kind: len(out)})
        except Exception as e:
            return Outcome(error=e, decision=decision, input_bytes=data)

    # --- the steps -------------------------------------------------------------------------

    def decide(
        self, ctx: RequestContext, models: list[str], pins: dict[str, int]
    ) -> RoutingDecision:
        """The one routing decision of a request (sticky key: header, else client address).

        A pin to a rollout's challenger is an operator's probe: it is served (and never
        counted as rollout traffic), but only for a caller who may pin it."""
        decision = self.canary.decide(models, pins, ctx.sticky_key)
        probed = sorted(
            f"{m}={d.version}"
            for m, d in decision.per_model.items()
            if d.pinned and d.arm == "challenger"
        )
        if probed and not ctx.may_pin_challenger:
            raise ChallengerPinForbidden(
                f"pinning {', '.join(probed)} needs the operator role: that version is under "
                "rollout (send no pin to be routed by the split)",
                pins=probed,
            )
        return decision

    async def _answer(
        self,
        ctx: RequestContext,
        spec: PipelineSpec,
        value: Any,
        decision: RoutingDecision,
        timeout_s: float,
    ) -> tuple[PipelineRun, RoutingDecision]:
        """Run on the decided versions within ``timeout_s`` (else 504 request_timeout); on a
        challenger failure re-run all on champions. Returns the run and the decision that
        answered (the one the audit record shows)."""
        try:
            return await asyncio.wait_for(self._attempts(ctx, spec, value, decision), timeout_s)
        except TimeoutError:
            raise RequestTimeout(f"the request exceeded its {timeout_s:g}s timeout") from None

    async def _attempts(
        self, ctx: RequestContext, spec: PipelineSpec, value: Any, decision: RoutingDecision
    ) -> tuple[PipelineRun, RoutingDecision]:
        try:
            return await self._run(ctx, spec, value, decision), decision
        except ChallengerFailed as failure:
            log.warning(
                "request %s: challenger %s v%s %s; re-running on champions",
                ctx.request_id,
                failure.model,
                failure.version,
                "refused the input" if failure.refused is not None else "failed",
            )
            decision = decision.with_champions()
            # If the champions fail too, the error is the caller's answer, and a challenger
            # that refused the same input is not blamed for it.
            run = await self._run(ctx, spec, value, decision)
            if failure.refused is not None:
                self.canary.challenger_refused(failure)  # the champion took what it refused
            return run, decision

    async def _run(
        self, ctx: RequestContext, spec: PipelineSpec, value: Any, decision: RoutingDecision
    ) -> PipelineRun:
        call = self.canary.caller(decision, self.handles, ctx.request_id)
        return await execute(spec, value, call)

    def _capture(
        self,
        ctx: RequestContext,
        nodes: NodeKinds,
        value: Any,
        outputs: dict[str, Any],
        decision: RoutingDecision,
    ) -> None:
        if self.capture is None or not nodes:
            return
        t0 = time.perf_counter()
        versions = decision.versions()
        self.capture.submit(
            CaptureJob(nodes, value, outputs, versions, "live", ctx.request_id, time.time())
        )
        ctx.stages["capture"] = time.perf_counter() - t0


def _clip_meta(clip: Clip) -> dict[str, Any]:
    return {
        "frames": len(clip.frames),
        "fps": clip.fps,
        "width": clip.size[0],
        "height": clip.size[1],
    }


def _one_model(name: str, task: str) -> PipelineSpec:
    """``POST /v1/models/{name}:predict`` as a one-node pipeline (node ``model``)."""
    op = "detect" if task == "detection" else "ocr"
    return PipelineSpec.model_validate(
        {
            "input": "image",
            "nodes": [{"name": "model", "op": op, "model": name, "inputs": ["image"]}],
            "output": {"model": "model"},
        }
    )


def _answered(
    ctx: RequestContext,
    body: dict[str, Any],
    decision: RoutingDecision,
    data: bytes | None,
    summary: dict[str, Any],
) -> Outcome:
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
    head = {"request_id": ctx.request_id, "model_versions": decision.versions(), "routing": routing}
    return Outcome(body={**head, **body}, decision=decision, input_bytes=data, summary=summary)


def audit_record(
    ctx: RequestContext, outcome: Outcome, status: int, code: str | None, latency_ms: float
) -> RequestRecord:
    """The audit record of one served (or refused) request."""
    nodes = {}
    if outcome.decision is not None:
        for model, d in outcome.decision.per_model.items():
            nodes[model] = node_entry(
                d.version,
                d.arm,
                d.weight,
                sticky_key=ctx.sticky_key if d.sticky else None,
                pinned=d.pinned,
                shadowed=d.shadow_version is not None,
                fallback=d.fallback,
            )
    raw = outcome.input_bytes
    route = ctx.route
    return RequestRecord(
        request_id=ctx.request_id,
        ts=time.time(),
        caller=ctx.caller,
        route=route,
        pipeline=route.split(":", 1)[1] if route.startswith("pipeline:") else None,
        input_sha256=sha256_hex(raw) if raw is not None else None,
        input_bytes=len(raw) if raw is not None else None,
        nodes=nodes,
        output_summary=outcome.summary,
        latency_ms=round(latency_ms, 2),
        status=status,
        error_code=code,
    )
