"""OCR deployment: detection + direction classification + recognition of one registry version."""

from __future__ import annotations

import time

import numpy as np
from ray import serve

from deployments.base import ModelServer, Queued, raised
from deployments.images import EncodedImage
from deployments.types import TextLine


@serve.deployment(max_ongoing_requests=16)
class OCR(ModelServer):
    async def predict(self, image: np.ndarray | EncodedImage) -> list[TextLine]:
        return raised(await self._batched(Queued(time.perf_counter(), image)))  # type: ignore[arg-type]

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.01)
    async def _batched(self, images: list[Queued]) -> list[list[TextLine]]:
        return await self._run_batch(images)

    def _batcher(self):  # type: ignore[no-untyped-def]
        return self._batched
