"""A pipeline as the config file writes it: nodes (op, inputs, model, params) and outputs.

:func:`check_pipeline` checks a DAG before anything is deployed: ops exist, every input is the
pipeline input or an earlier node (so there are no cycles), kinds line up, and model ops name
a model of the right task. Errors quote where they are (``pipelines.clip.nodes[2]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from deployments.models.keypoints import can_derive
from serving.pipelines.ops import OPS, PIPELINE_INPUT_KINDS
from serving.schema import Strict


class NodeSpec(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    op: str
    inputs: list[str] = Field(min_length=1)
    model: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class PipelineSpec(Strict):
    input: Literal["image", "frames"]
    description: str = ""
    nodes: list[NodeSpec] = Field(min_length=1)
    output: dict[str, str] = Field(
        description="Response field -> node whose result it carries.", min_length=1
    )
    timeout_s: float = Field(default=60.0, gt=0)


def check_pipeline(pname: str, pipe: PipelineSpec, model_tasks: Mapping[str, str]) -> None:
    """Check a DAG: ops exist, inputs are earlier nodes (so no cycles), kinds line up."""
    kinds: dict[str, str] = {"input": pipe.input, pipe.input: pipe.input}
    for i, node in enumerate(pipe.nodes):
        where = f"pipelines.{pname}.nodes[{i}] ({node.name!r})"
        if node.name in kinds:
            raise ValueError(f"{where}: name {node.name!r} is used twice or shadows the input")
        op = OPS.get(node.op)
        if op is None:
            raise ValueError(f"{where}: unknown op {node.op!r}; known ops: {sorted(OPS)}")
        if len(node.inputs) != len(op.inputs):
            raise ValueError(
                f"{where}: op {node.op!r} takes inputs {list(op.inputs)}, got {node.inputs!r}"
            )
        for src, want in zip(node.inputs, op.inputs, strict=True):
            if src not in kinds:
                raise ValueError(
                    f"{where}: input {src!r} is not the pipeline input or an earlier node "
                    f"(have {sorted(kinds)})"
                )
            if kinds[src] != want:
                raise ValueError(
                    f"{where}: input {src!r} gives {kinds[src]!r} but op {node.op!r} needs {want!r}"
                )
        if op.task is not None:
            if node.model is None:
                raise ValueError(f"{where}: op {node.op!r} needs a 'model' ({op.task} model)")
            task = model_tasks.get(node.model)
            if task is None:
                raise ValueError(
                    f"{where}: model {node.model!r} is not in models: {sorted(model_tasks)}"
                )
            if task != op.task:
                raise ValueError(
                    f"{where}: op {node.op!r} needs a {op.task} model, {node.model!r} is {task}"
                )
        elif node.model is not None:
            raise ValueError(f"{where}: op {node.op!r} takes no model, got {node.model!r}")
        try:
            op.validate_params(node.params)
        except ValueError as e:
            raise ValueError(f"{where}: bad params {node.params!r}: {e}") from None
        kinds[node.name] = op.output
    for field, src in pipe.output.items():
        if src not in kinds or src in ("input", pipe.input):
            raise ValueError(f"pipelines.{pname}.output.{field}: {src!r} is not a node")
    if pipe.input not in PIPELINE_INPUT_KINDS:  # pragma: no cover - Literal guards it
        raise ValueError(f"pipelines.{pname}.input: {pipe.input!r}")


def check_keypoint_layouts(
    pname: str, pipe: PipelineSpec, layouts: Mapping[str, Mapping[int, str | None]]
) -> None:
    """Refuse a detector/action pair whose keypoint layouts differ, unless the action node
    derives the action's layout from the detector's (``params.derive_keypoints``).

    ``layouts[model][version]`` is the layout each served version reports or consumes (see
    ``Manifest.keypoint_layout``); a version without one (registered before layouts were
    recorded) is not judged. Every served detector version is paired with every served action
    version, since the router may combine any two.
    """
    nodes = {n.name: n for n in pipe.nodes}
    for i, node in enumerate(pipe.nodes):
        if node.op != "classify_tracks" or node.model is None:
            continue
        detector = _upstream_model(nodes, node.inputs[0], "detection")
        if detector is None:
            continue
        derived = set(node.params.get("derive_keypoints", []))
        for dv, got in sorted(layouts.get(detector, {}).items()):
            for av, want in sorted(layouts.get(node.model, {}).items()):
                if got is None or want is None or got == want:
                    continue
                if want in derived and can_derive(got, want):
                    continue
                raise ValueError(
                    f"pipelines.{pname}.nodes[{i}] ({node.name!r}): {node.model} v{av} consumes "
                    f"{want!r} keypoints but {detector} v{dv} reports {got!r}; add "
                    f"derive_keypoints: [{want}] to the node's params (if {want!r} can be "
                    f"derived from {got!r}) or serve a matching pair"
                )


def _upstream_model(nodes: Mapping[str, NodeSpec], start: str, task: str) -> str | None:
    """The model of the nearest node of ``task`` upstream of ``start`` (first inputs first)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop(0)
        node = nodes.get(name)
        if node is None or name in seen:
            continue
        seen.add(name)
        if OPS[node.op].task == task:
            return node.model
        todo += node.inputs
    return None
