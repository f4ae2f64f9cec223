"""Action-classification deployment: one label per tracked person's keypoint/box sequence."""

from __future__ import annotations

import time

from ray import serve

from deployments.base import ModelServer, Queued, raised
from deployments.types import ActionPrediction, Track


@serve.deployment(max_ongoing_requests=32)
class ActionClassifier(ModelServer):
    async def predict(self, track: Track) -> ActionPrediction:
        return raised(await self._batched(Queued(time.perf_counter(), track)))  # type: ignore[arg-type]

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def _batched(self, tracks: list[Queued]) -> list[ActionPrediction]:
        return await self._run_batch(tracks)

    def _batcher(self):  # type: ignore[no-untyped-def]
        return self._batched
