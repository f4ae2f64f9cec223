"""A pipeline as the config file writes it: nodes (op, inputs, model, params) and outputs.

:func:`check_pipeline` checks a DAG before anything is deployed: ops exist, every input is the
pipeline input or an earlier node (so there are no cycles), kinds line up, and model ops name
a model of the right task. Errors quote where they are (``pipelines.clip.nodes[2]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

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
