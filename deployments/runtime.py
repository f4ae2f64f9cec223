"""ONNX Runtime sessions with the execution provider the hardware really has.

GPU runtimes (TensorRT, CUDA) are chosen only when the replica was given a GPU *and* a CUDA
device and the matching ORT provider really exist; otherwise the session falls back to the CPU
and ``RuntimeInfo.fallback_reason`` says why, so `/v1/models` can show it. Ray happily schedules
replicas on logical GPUs that do not exist (that is how the scheduling tests run on a laptop),
so "assigned a GPU" is never taken as "has a GPU". Nor is "ORT lists the provider" taken as
"ORT can start it": ``create_session`` reports the provider the session really got.
"""

from __future__ import annotations

import os
import threading
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
    overlap_intra_op_num_threads: int = Field(
        default=0,
        ge=0,
        description=(
            "CPU only: threads of a second session of the same model, used by runs that start "
            "while another run is in flight (max_concurrent_batches > 1). A lone request gets "
            "all intra_op_num_threads; overlapping ones run one thread each side by side, which "
            "is how 2 cores are used best. 0 = one session for all runs."
        ),
    )
    allow_spinning: bool = Field(
        default=False,
        description=(
            "Let ORT's intra-op threads spin between the parallel sections of a run instead of "
            "sleeping (faster runs: 82 vs 96 ms for YOLO11n-pose on 2 threads of 2 cores). "
            "They stop spinning as soon as the session's last run returns, so an idle replica "
            "burns nothing; the overlap session never spins (it shares the cores). Off by "
            "default: on a box where replicas share the cores, spinning threads take the CPU "
            "the others need."
        ),
    )


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
            reason = (
                f"no GPU execution provider in onnxruntime for the model's runtimes {preferred}"
                f" (available: {available})"
            )
    return RuntimeInfo("CPUExecutionProvider", "cpu", requested, reason, gpu_ids)


def create_session(
    path: Path, spec: RuntimeSpec, preferred: list[str] | None = None
) -> tuple[Any, RuntimeInfo]:
    """Build an ``onnxruntime.InferenceSession`` for ``path`` on the chosen provider.

    The returned info describes the provider the session really runs on: ORT silently drops a
    GPU provider it cannot start (CUDA/cuDNN/TensorRT libraries missing) and runs on the next
    one, and some builds raise instead (then the CPU alone is retried); either way the info then
    names the provider the session fell back to (the CPU, or CUDA behind TensorRT) and why.
    """
    import onnxruntime as ort

    info = choose_provider(spec, preferred or ["cpu"])

    def build(providers: list[str]) -> Any:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = spec.intra_op_num_threads
        opts.inter_op_num_threads = spec.inter_op_num_threads
        opts.log_severity_level = 3
        opts.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if spec.allow_spinning else "0"
        )
        # Spin only while a run is in flight: without this, ORT's workers keep spinning after
        # the last run returns (whole cores for up to seconds on some CPUs).
        opts.add_session_config_entry(
            "session.force_spinning_stop", "1" if spec.allow_spinning else "0"
        )
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)

    if info.provider == "CPUExecutionProvider":
        session = build(["CPUExecutionProvider"])
        n = spec.overlap_intra_op_num_threads
        if n and n < spec.intra_op_num_threads:
            overlap = spec.model_copy(update={"intra_op_num_threads": n, "allow_spinning": False})
            return AdaptiveSession(session, create_session(path, overlap)[0]), info
        return session, info
    # TensorRT needs its own libraries on top of CUDA's: when they are missing, ORT should land on
    # the same GPU through CUDA rather than on the CPU (ORT lists TensorRT in every GPU build).
    gpu_chain = [info.provider]
    if info.provider == _PROVIDERS["tensorrt"]:
        gpu_chain.append(_PROVIDERS["cuda"])
    try:
        session = build([*gpu_chain, "CPUExecutionProvider"])
    except Exception as e:  # any EP start failure; a broken model raises again from the retry
        session = build(["CPUExecutionProvider"])
        first_line = (str(e).strip().splitlines() or [""])[0][:200]
        detail = f"{type(e).__name__}: {first_line}"
        return session, _fell_back(info, session, detail)
    if info.provider not in session.get_providers():
        return session, _fell_back(info, session, f"session providers: {session.get_providers()}")
    return session, info


def _fell_back(info: RuntimeInfo, session: Any, detail: str) -> RuntimeInfo:
    """What the session runs on when ORT could not start ``info.provider``."""
    actual = next(iter(session.get_providers()), "CPUExecutionProvider")
    # ORT's own retry after a TensorRT failure may land on CUDA: still the assigned GPU.
    device = "cpu" if actual == "CPUExecutionProvider" else info.device
    reason = f"onnxruntime could not start {info.provider} ({detail}); running on {actual}"
    return RuntimeInfo(actual, device, info.requested, reason, info.gpu_ids)


class AdaptiveSession:
    """Two CPU sessions of one model: ``solo`` (every thread) for a run alone, ``overlap``
    (fewer threads) for a run that starts while another is in flight. ORT fixes a session's
    threads when it is built, so the choice is made per run, by what else is running."""

    def __init__(self, solo: Any, overlap: Any) -> None:
        self._solo, self._overlap = solo, overlap
        self._lock = threading.Lock()
        self._in_flight = 0
        self.overlapped_runs = 0

    def run(self, output_names: Any, feeds: Any, *args: Any) -> Any:
        with self._lock:
            alone = self._in_flight == 0
            self._in_flight += 1
            self.overlapped_runs += not alone
        try:
            return (self._solo if alone else self._overlap).run(output_names, feeds, *args)
        finally:
            with self._lock:
                self._in_flight -= 1

    def __getattr__(self, name: str) -> Any:  # inputs, outputs, providers: the solo's
        return getattr(self._solo, name)
