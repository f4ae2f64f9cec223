"""Detection deployment: one registry version of a person detector per replica set."""

from __future__ import annotations

import time

import numpy as np
from ray import serve

from deployments.base import ModelServer, Queued, raised
from deployments.images import EncodedImage
from deployments.types import Detection


@serve.deployment(max_ongoing_requests=32)
class Detector(ModelServer):
    async def predict(self, image: np.ndarray | EncodedImage) -> list[Detection]:
        return raised(await self._batched(Queued(time.perf_counter(), image)))  # type: ignore[arg-type]

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _batched(self, images: list[Queued]) -> list[list[Detection]]:
        return await self._run_batch(images)

    def _batcher(self):  # type: ignore[no-untyped-def]
        return self._batched
