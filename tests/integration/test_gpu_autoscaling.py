"""Fractional-GPU replicas autoscale, are placed on GPUs, and report the runtime they really got.

Without a CUDA device the session cluster declares 2 logical GPUs (`ray.init(num_gpus=2)`), which
Ray schedules like real ones; with one, Ray uses the real GPUs. What each replica must report
follows from this machine, probed here in the test process: no CUDA device -> the CPU, because
"no CUDA device"; a device but no GPU provider in onnxruntime -> the CPU, because "no GPU execution
provider"; a device and a GPU provider -> that provider on ``cuda:<its GPU id>``, no fallback
(TensorRT listed but its libraries missing: CUDA on the same GPU, saying so).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.integration.conftest import wait_for
from tests.integration.media import astronaut

pytestmark = pytest.mark.integration

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TRT = "TensorrtExecutionProvider"


def cluster_gpu_ids() -> set[str]:
    """The GPU ids Ray hands out: the driver's CUDA_VISIBLE_DEVICES if set, else 0..n-1."""
    import ray

    from deployments.runtime import assigned_gpu_ids

    n = int(ray.cluster_resources().get("GPU", 0))
    visible = assigned_gpu_ids()
    return set(visible[:n]) if visible else {str(i) for i in range(n)}


def assert_runtime_matches_hardware(info: dict[str, Any]) -> None:
    """The replica's runtime is what this machine's device and onnxruntime build imply."""
    import onnxruntime as ort

    from deployments.runtime import cuda_device_present

    runtime = info["runtime"]
    available = ort.get_available_providers()
    assert runtime["requested"] == "cuda", info
    assert runtime["gpu_ids"] == [info["cuda_visible_devices"]], info
    if not cuda_device_present():
        # Logical GPU only: the runtime fell back to the CPU and says why.
        assert (runtime["provider"], runtime["device"]) == (CPU, "cpu"), info
        assert "no CUDA device" in (runtime["fallback_reason"] or ""), info
    elif CUDA not in available and TRT not in available:
        # A real GPU, but a CPU-only onnxruntime.
        assert (runtime["provider"], runtime["device"]) == (CPU, "cpu"), info
        assert "no GPU execution provider" in (runtime["fallback_reason"] or ""), info
    elif TRT in available and runtime["provider"] != TRT:
        # The detector prefers TensorRT, which every GPU build lists but which needs its own
        # libraries: without them the session must land on CUDA on the same GPU and say so.
        assert (runtime["provider"], runtime["device"]) == (
            CUDA,
            f"cuda:{info['cuda_visible_devices']}",
        ), info
        assert f"could not start {TRT}" in (runtime["fallback_reason"] or ""), info
    else:
        expected = TRT if TRT in available else CUDA
        assert runtime == {
            "provider": expected,
            "device": f"cuda:{info['cuda_visible_devices']}",
            "requested": "cuda",
            "fallback_reason": None,
            "gpu_ids": [info["cuda_visible_devices"]],
        }, info


def test_fractional_gpu_replicas_scale_up_and_report_the_runtime_the_hardware_has(
    ray_cluster: None, store: Any, data_dir, base_url: str
) -> None:  # type: ignore[no-untyped-def]
    # base_url: Serve must first be started by the platform fixture, on its own port; a
    # `serve.run` here first would start it on the default port (tests run in random order).
    from ray import serve

    from deployments.base import ModelBinding
    from deployments.detection import Detector
    from serving.config import DeploymentSpec

    spec = DeploymentSpec.model_validate(
        {
            "num_cpus": 0.1,
            "num_gpus": 0.5,
            "max_ongoing_requests": 4,
            "autoscaling": {
                "min_replicas": 1,
                "max_replicas": 4,
                "target_ongoing_requests": 1,
                "upscale_delay_s": 0.5,
                "downscale_delay_s": 600,
                "metrics_interval_s": 0.5,
                "look_back_period_s": 2,
            },
        }
    )
    binding = ModelBinding(
        name="detector",
        version=1,
        task="detection",
        tracking_uri=store.tracking_uri,
        data_dir=str(data_dir),
        max_batch_size=2,
        batch_wait_timeout_s=0.05,
    )
    app = Detector.options(name="detector-gpu", **spec.ray_options()).bind(binding)
    handle = serve.run(app, name="gpu", route_prefix=None)
    image = astronaut()
    stop = threading.Event()

    errors: list[str] = []

    def drive() -> None:
        while not stop.is_set():
            try:
                handle.predict.remote(image).result(timeout_s=60)
            except Exception as e:  # keep the load on; report what went wrong if it fails
                errors.append(repr(e)[:200])

    def running() -> int:
        status = serve.status().applications["gpu"].deployments["detector-gpu"]
        states.append({**status.replica_states, "message": status.message})
        return int(status.replica_states.get("RUNNING", 0))

    states: list[dict[str, int]] = []

    threads = [threading.Thread(target=drive, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        # Scale-up is what is asserted; on 2 shared cores a new replica (a fresh worker process
        # importing onnxruntime + mlflow) can take tens of seconds to come up, hence the margin.
        wait_for(
            lambda: running() >= 2,
            timeout=240,
            interval=1,
            what=lambda: f"upscale to >= 2 (states seen: {states[-3:]}; errors: {errors[-3:]})",
        )
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)

    infos: dict[int, dict[str, Any]] = {}

    def every_running_replica_answered() -> bool:
        info = handle.info.remote().result(timeout_s=30)
        infos[info["pid"]] = info
        return len(infos) >= running()

    wait_for(
        every_running_replica_answered,
        timeout=60,
        interval=0.1,
        what=lambda: f"info from every RUNNING replica (pids seen: {sorted(infos)})",
    )
    assert len(infos) >= 2, infos
    gpu_ids = cluster_gpu_ids()
    for info in infos.values():
        # Placed on a GPU: Ray set CUDA_VISIBLE_DEVICES to one of the cluster's GPUs ...
        assert info["cuda_visible_devices"] in gpu_ids, (info, gpu_ids)
        assert info["gpu_ids"] == [info["cuda_visible_devices"]]
        # ... and the runtime says what it really runs on there.
        assert_runtime_matches_hardware(info)
    # Two half-GPU replicas share each GPU.
    per_gpu = [sum(1 for i in infos.values() if i["cuda_visible_devices"] == g) for g in gpu_ids]
    assert max(per_gpu) <= 2
    serve.delete("gpu")
