"""Pipelines: DAGs of ops from the config file, and how one runs.

- ``spec``: a pipeline as the YAML writes it, and the DAG check (ops, inputs, kinds, models).
- ``ops``: the building blocks a pipeline can name, their kinds and params, JSON rendering.
- ``executor``: runs a DAG on one input; nodes start as soon as their inputs are ready.
- ``tracker``: the multi-object tracker behind the ``track`` op.
- ``stride``: strided detection for clips (sampled frames, interpolated track boxes).
"""

from serving.pipelines.executor import (
    NodeKinds,
    PipelineRun,
    execute,
    model_node_kinds,
    models_of,
    result_kpis,
    run_pipeline,
)
from serving.pipelines.ops import OPS, Clip, ModelCaller, Op, to_json
from serving.pipelines.spec import NodeSpec, PipelineSpec, check_pipeline
from serving.pipelines.stride import FrameDetections
from serving.pipelines.tracker import TrackerConfig, track_detections

__all__ = [
    "OPS",
    "Clip",
    "FrameDetections",
    "ModelCaller",
    "NodeKinds",
    "NodeSpec",
    "Op",
    "PipelineRun",
    "PipelineSpec",
    "TrackerConfig",
    "check_pipeline",
    "execute",
    "model_node_kinds",
    "models_of",
    "result_kpis",
    "run_pipeline",
    "to_json",
    "track_detections",
]
