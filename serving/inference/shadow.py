"""Shadow traffic: mirror a champion-served request to the challenger, in the background.

The caller never waits for a shadow and never sees it fail. Mirrors are capped per ingress
replica (``canary.shadow_max_concurrency``) so that a small machine keeps serving callers
first; each mirror becomes an agreement record for the rollout controller and, when drift
capture is on, ``source=shadow`` rows for the drift monitor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from drift.capture import CaptureJob, CaptureQueue
from serving.canary.compare import agreement
from serving.canary.split import ModelRoute, RoutingDecision
from serving.inference.routing import CanaryState, HandleSource
from serving.pipelines.executor import NodeKinds, execute
from serving.pipelines.spec import PipelineSpec

log = logging.getLogger("canaryserve.shadow")


class Shadows:
    def __init__(
        self,
        canary: CanaryState,
        handles: HandleSource,
        capture: CaptureQueue | None,
    ) -> None:
        self._canary = canary
        self._handles = handles
        self._capture = capture
        self.in_flight = 0
        self.skipped = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def mirror(
        self,
        request_id: str,
        spec: PipelineSpec,
        nodes: NodeKinds,
        value: Any,
        decision: RoutingDecision,
        primary: dict[str, Any],
    ) -> int:
        """Start the decided shadows of one request; returns how many were started."""
        started = 0
        for model, version in decision.shadows().items():
            route = self._canary.routes.get(model)
            if route is None or route.challenger != version:
                continue
            if self.in_flight >= self._canary.spec.shadow_max_concurrency:
                self.skipped += 1  # the cap protects callers on a small machine
                continue
            versions = {**decision.versions(), model: version}
            mine = tuple(n for n in nodes if n[1] == model)
            self.in_flight += 1
            task = asyncio.get_running_loop().create_task(
                self._shadow(request_id, spec, value, decision, route, versions, mine, primary)
            )
            self._tasks.add(task)  # a reference, so the task is not collected mid-flight
            task.add_done_callback(self._tasks.discard)
            started += 1
        return started

    async def _shadow(
        self,
        request_id: str,
        spec: PipelineSpec,
        value: Any,
        decision: RoutingDecision,
        route: ModelRoute,
        versions: dict[str, int],
        nodes: NodeKinds,
        primary: dict[str, Any],
    ) -> None:
        try:
            call = self._canary.caller(
                decision, self._handles, request_id, shadow=True, versions=versions
            )
            run = await asyncio.wait_for(
                execute(spec, value, call), self._canary.spec.shadow_timeout_s
            )
            raw = run.outputs
            if self._capture is not None and nodes:
                self._capture.submit(
                    CaptureJob(nodes, value, raw, versions, "shadow", request_id, time.time())
                )
            scores = [
                agreement(kind, primary[name], raw[name])
                for name, _model, kind in nodes
                if name in primary and name in raw
            ]
            value_ = sum(scores) / len(scores) if scores else None
            self._canary.record(route, kind="shadow", agreement=value_)
        except Exception as e:  # a failing or slow shadow never reaches the caller
            log.info("shadow of %s v%s failed: %r", route.model, route.challenger, e)
            self._canary.record(route, kind="shadow", agreement=None)
        finally:
            self.in_flight -= 1
