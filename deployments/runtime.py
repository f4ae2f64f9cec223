"""ONNX Runtime sessions with the execution provider the hardware really has.

GPU runtimes (TensorRT, CUDA) are chosen only when the replica was given a GPU *and* a CUDA
device and the matching ORT provider really exist; otherwise the session falls back to the CPU
and ``RuntimeInfo.fallback_reason`` says why, so `/v1/models` can show it. Ray happily schedules
replicas on logical GPUs that do not exist (that is how the scheduling tests run on a laptop),
so "assigned a GPU" is never taken as "has a GPU".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Device = Literal["auto", "cpu", "cuda"]
_PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


class RuntimeSpec(BaseModel):
    """How a replica runs its model; comes from the serving config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: Device = Field(
        default="auto", description="auto: GPU if the replica was given one and it exists."
    )
    intra_op_num_threads: int = Field(default=1, ge=0, description="0 = ORT default (all cores).")
    inter_op_num_threads: int = Field(default=1, ge=0)


@dataclass(frozen=True)
class RuntimeInfo:
    provider: str  # e.g. "CPUExecutionProvider"
    device: str  # "cpu" or "cuda:0"
    requested: str  # what config/manifest asked for
    fallback_reason: str | None = None
    gpu_ids: tuple[str, ...] = ()  # what Ray assigned (CUDA_VISIBLE_DEVICES)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "device": self.device,
            "requested": self.requested,
            "fallback_reason": self.fallback_reason,
            "gpu_ids": list(self.gpu_ids),
        }


def assigned_gpu_ids() -> tuple[str, ...]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return tuple(x for x in visible.split(",") if x.strip() != "")


def cuda_device_present() -> bool:
    """True only when a real NVIDIA device node exists (not just a logical Ray GPU)."""
    return Path("/dev/nvidiactl").exists() or Path("/dev/nvidia0").exists()


def choose_provider(
    spec: RuntimeSpec, preferred: list[str], available: list[str] | None = None
) -> RuntimeInfo:
    """Pure decision (unit-tested): which provider to use and why not a better one."""
    if available is None:
        import onnxruntime as ort

        available = list(ort.get_available_providers())
    gpu_ids = assigned_gpu_ids()
    wants_gpu = spec.device == "cuda" or (spec.device == "auto" and bool(gpu_ids))
    requested = spec.device if spec.device != "auto" else ("cuda" if gpu_ids else "cpu")
    reason = None
    if wants_gpu:
        if not cuda_device_present():
            reason = f"no CUDA device on this node (assigned GPU ids {list(gpu_ids)} are logical)"
        else:
            for name in preferred:
                prov = _PROVIDERS.get(name)
                if name != "cpu" and prov in available:
                    return RuntimeInfo(
                        prov, f"cuda:{gpu_ids[0] if gpu_ids else 0}", requested, None, gpu_ids
                    )
            reason = f"no GPU execution provider in onnxruntime (available: {available})"
    return RuntimeInfo("CPUExecutionProvider", "cpu", requested, reason, gpu_ids)


def create_session(
    path: Path, spec: RuntimeSpec, preferred: list[str] | None = None
) -> tuple[Any, RuntimeInfo]:
    """Build an ``onnxruntime.InferenceSession`` for ``path`` on the chosen provider."""
    import onnxruntime as ort

    info = choose_provider(spec, preferred or ["cpu"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = spec.intra_op_num_threads
    opts.inter_op_num_threads = spec.inter_op_num_threads
    opts.log_severity_level = 3
    providers = (
        [info.provider]
        if info.provider == "CPUExecutionProvider"
        else [info.provider, "CPUExecutionProvider"]
    )
    session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    return session, info
