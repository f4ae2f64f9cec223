"""Action-classification deployment: one label per tracked person's keypoint/box sequence."""

from __future__ import annotations

from ray import serve

from deployments.base import ModelServer
from deployments.types import ActionPrediction, Track


@serve.deployment(max_ongoing_requests=32)
class ActionClassifier(ModelServer):
    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def predict(self, tracks: list[Track]) -> list[ActionPrediction]:
        return await self._run_batch(tracks)

    def _batcher(self):  # type: ignore[no-untyped-def]
        return self.predict
