"""Detection deployment: one registry version of a person detector per replica set."""

from __future__ import annotations

import numpy as np
from ray import serve

from deployments.base import ModelServer
from deployments.types import Detection


@serve.deployment(max_ongoing_requests=32)
class Detector(ModelServer):
    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def predict(self, images: list[np.ndarray]) -> list[list[Detection]]:
        return await self._run_batch(images)

    def _batcher(self):  # type: ignore[no-untyped-def]
        return self.predict
