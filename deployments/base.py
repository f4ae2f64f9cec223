"""What every model deployment shares: load one registry version, run batches off the loop.

A replica is bound to exactly one registry version (name + number). It resolves that version
from the registry *itself* (so on a multi-node cluster each node gets its own sha-verified
copy), loads it with the runtime the hardware has, and reports what it runs in ``info()``.
Deployments hold no HTTP code and read no env vars: everything arrives typed through ``.bind()``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict

from deployments.runtime import RuntimeSpec
from serving import metrics
from serving.errors import CanaryError


class ModelBinding(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: int
    task: str
    tracking_uri: str
    data_dir: str
    max_batch_size: int = 8
    batch_wait_timeout_s: float = 0.005
    max_concurrent_batches: int = 1
    runtime: RuntimeSpec = RuntimeSpec()

    @property
    def deployment_name(self) -> str:
        return deployment_name(self.name, self.version)


def deployment_name(model: str, version: int) -> str:
    return f"{model}-v{version}"


class Queued(NamedTuple):
    """One caller's item on its way into a batch, with when it arrived at the replica."""

    arrived: float  # time.perf_counter() in this replica
    item: Any


def raised(result: Any) -> Any:
    """A batch result for one caller: the item's own refusal is raised, anything else returned."""
    if isinstance(result, CanaryError):
        raise result
    return result


class ModelServer:
    """Base of Detector / OCR / ActionClassifier (each adds its own ``@serve.batch`` method)."""

    def __init__(self, binding: ModelBinding) -> None:
        from deployments.loader import load_model
        from model_registry.mlflow_store import MlflowModelStore

        self._binding = binding
        store = MlflowModelStore(
            tracking_uri=binding.tracking_uri, models_dir=Path(binding.data_dir) / "models"
        )
        resolved = store.resolve(f"{binding.name}/{binding.version}")
        self._path = str(resolved.path)
        self._model = load_model(resolved.path, binding.runtime)
        self._batch_sizes: deque[int] = deque(maxlen=512)
        self._batches = 0
        self._items = 0
        self._started = time.time()
        batcher = self._batcher()
        batcher.set_max_batch_size(binding.max_batch_size)
        batcher.set_batch_wait_timeout_s(binding.batch_wait_timeout_s)
        # Serve has no setter for it; its lazy queue reads the attribute when first used.
        batcher.set_max_batch_size.__self__.max_concurrent_batches = binding.max_concurrent_batches

    def _batcher(self) -> Any:  # the subclass's @serve.batch method
        raise NotImplementedError

    async def _run_batch(self, queued: list[Queued]) -> list[Any]:
        """One result per item; an item the model refused (a 4xx) gets its error as its result.

        A batch holds many callers' items: one caller's bad input (a 1x1 image) must not fail
        the others it was batched with. When the model refuses the batch, each item is run
        alone and only the refused ones get the error (:func:`raised` turns it back into an
        exception for their caller)."""
        t0 = time.perf_counter()
        items = [q.item for q in queued]
        # ORT releases the GIL; running it in a thread keeps the replica's loop (health checks,
        # the batch queue) responsive while a batch computes.
        try:
            out = await asyncio.to_thread(self._model.predict, items)
            stages = dict(getattr(self._model, "stage_times", None) or {})
        except CanaryError as e:
            if e.status_code >= 500 or len(items) == 1:
                raise
            out = [await self._alone(x) for x in items]
            stages = {}
        elapsed = time.perf_counter() - t0
        self._batch_sizes.append(len(items))
        self._batches += 1
        self._items += len(items)
        b = self._binding
        metrics.observe_batch(b.name, b.version, len(items), elapsed)
        # Every item waited for the whole batch: each one counts the batch's stage times.
        stages = stages or {"model": elapsed}
        version = str(b.version)
        for q in queued:
            metrics.observe_stages(
                {"queue": t0 - q.arrived, **stages}, model=b.name, version=version
            )
        return out

    async def _alone(self, item: Any) -> Any:
        try:
            (result,) = await asyncio.to_thread(self._model.predict, [item])
        except CanaryError as e:
            if e.status_code >= 500:
                raise
            return e
        return result

    def info(self) -> dict[str, Any]:
        import ray

        ctx = ray.get_runtime_context()
        return {
            "model": self._binding.name,
            "version": self._binding.version,
            "task": self._binding.task,
            "keypoint_layout": self._model.manifest.keypoint_layout,
            "license": self._model.manifest.license,
            "labels": list(self._model.manifest.labels),
            "artifact_dir": self._path,
            "runtime": self._model.runtime.to_dict(),
            "pid": os.getpid(),
            "node_id": ctx.get_node_id(),
            "replica": ctx.get_actor_name(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "batches": self._batches,
            "items": self._items,
            "ort_calls": self._model.ort_calls,
            "max_batch_size_seen": max(self._batch_sizes, default=0),
            "max_batch_size": self._binding.max_batch_size,
        }

    def check_health(self) -> None:
        # Serve calls this periodically; a model that cannot answer marks the replica unhealthy.
        if self._model is None:  # pragma: no cover
            raise RuntimeError("model not loaded")
