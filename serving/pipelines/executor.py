"""Run a pipeline DAG for one request.

Nodes start as soon as their inputs are ready, so independent branches (OCR next to the person
boxes in ``inspect``) run in parallel. Model calls go through a ``ModelCaller`` that the ingress
binds to the versions chosen for *this* request, so every node of one request sees the same
versions.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from serving.pipelines.ops import OPS, ModelCaller, to_json
from serving.pipelines.spec import PipelineSpec


@dataclass(frozen=True)
class PipelineRun:
    """One run of a DAG: the response fields, and every node's output unrendered (for shadow
    comparison, drift capture and KPIs)."""

    result: dict[str, Any]
    outputs: dict[str, Any]


# (node name, model, output kind) of every node that calls a model.
NodeKinds = tuple[tuple[str, str, str], ...]


async def execute(spec: PipelineSpec, value: Any, call: ModelCaller) -> PipelineRun:
    """Run the DAG on one input; model nodes go through ``call``."""
    results: dict[str, asyncio.Task[Any]] = {}
    kinds: dict[str, str] = {}
    loop_input: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    loop_input.set_result(value)

    async def _node(node_index: int) -> Any:
        node = spec.nodes[node_index]
        op = OPS[node.op]
        args = [
            await (loop_input if src in ("input", spec.input) else results[src])
            for src in node.inputs
        ]
        params = op.validate_params(node.params)
        return await op.run(call, node.model, args, params)

    for i, node in enumerate(spec.nodes):
        results[node.name] = asyncio.ensure_future(_node(i))
        kinds[node.name] = OPS[node.op].output
    try:
        await asyncio.gather(*results.values())
    finally:
        for task in results.values():
            if not task.done():
                task.cancel()
    outputs = {name: task.result() for name, task in results.items()}
    rendered = {field: to_json(kinds[src], outputs[src]) for field, src in spec.output.items()}
    return PipelineRun(rendered, outputs)


async def run_pipeline(spec: PipelineSpec, value: Any, call: ModelCaller) -> dict[str, Any]:
    """The response fields of one run of the DAG."""
    return (await execute(spec, value, call)).result


def models_of(spec: PipelineSpec) -> list[str]:
    """The model names a pipeline calls, in node order, without repeats."""
    seen: list[str] = []
    for node in spec.nodes:
        if node.model and node.model not in seen:
            seen.append(node.model)
    return seen


def model_node_kinds(spec: PipelineSpec) -> NodeKinds:
    """(node name, model, output kind) of every node that calls a model."""
    return tuple((n.name, n.model, OPS[n.op].output) for n in spec.nodes if n.model)


def result_kpis(spec: PipelineSpec, raw: dict[str, Any]) -> tuple[list[float], list[str]]:
    """Confidences of a request's model results and the action labels of its alerts."""
    confidences: list[float] = []
    alerts: list[str] = []
    for node in spec.nodes:
        value, kind = raw.get(node.name), OPS[node.op].output
        if value is None:
            continue
        if node.model and kind == "detections":
            confidences += [d.score for d in value]
        elif node.model and kind == "frame_detections":
            confidences += [d.score for dets in value for d in dets]
        elif node.model and kind == "text":
            confidences += [line.confidence for line in value]
        elif node.model and kind == "actions":
            confidences += [a.prediction.confidence for a in value]
        elif kind == "alerts":
            alerts += [a.action for a in value]
    return confidences, alerts
