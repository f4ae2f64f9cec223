"""The packaged ``clip`` pipeline with its detector's stride set (shared by the pipeline tests)."""

from __future__ import annotations

from serving.config import load_config
from serving.pipelines.spec import PipelineSpec


def clip_spec(stride: int) -> PipelineSpec:
    """The packaged ``clip`` pipeline detecting every ``stride``-th frame whatever the clip's
    fps (the packaged one caps detection at 8 frames per second of clip)."""
    spec = load_config().pipelines["clip"]
    nodes = [
        n.model_copy(update={"params": {**n.params, "stride": stride, "max_detect_fps": None}})
        if n.op == "detect_frames"
        else n
        for n in spec.nodes
    ]
    return spec.model_copy(update={"nodes": nodes})
