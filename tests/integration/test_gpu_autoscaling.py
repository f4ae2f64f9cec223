"""Fractional-GPU replicas autoscale and are placed on (logical) GPUs; the runtime falls back.

The session cluster declares 2 logical GPUs (`ray.init(num_gpus=2)`), which Ray schedules like
real ones. No CUDA device exists here, so every replica must say it runs on the CPU and why.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.integration.conftest import wait_for
from tests.integration.media import astronaut

pytestmark = pytest.mark.integration


def test_fractional_gpu_replicas_scale_up_and_fall_back_to_cpu(
    ray_cluster: None, store: Any, data_dir
) -> None:  # type: ignore[no-untyped-def]
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
    deadline = time.monotonic() + 60
    while len(infos) < running() and time.monotonic() < deadline:
        info = handle.info.remote().result(timeout_s=30)
        infos[info["pid"]] = info
    assert len(infos) >= 2, infos
    for info in infos.values():
        # Placed on a GPU: Ray set CUDA_VISIBLE_DEVICES to one of the two logical GPUs ...
        assert info["cuda_visible_devices"] in {"0", "1"}, info
        assert info["gpu_ids"] == [info["cuda_visible_devices"]]
        # ... which does not exist, so the runtime fell back to the CPU and says why.
        assert info["runtime"]["provider"] == "CPUExecutionProvider"
        assert info["runtime"]["requested"] == "cuda"
        assert "no CUDA device" in info["runtime"]["fallback_reason"]
    # Two half-GPU replicas share each logical GPU.
    per_gpu = [sum(1 for i in infos.values() if i["cuda_visible_devices"] == g) for g in "01"]
    assert max(per_gpu) <= 2
    serve.delete("gpu")
