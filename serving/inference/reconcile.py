"""The ingress's background loops: follow the sources of truth, report what was served.

Every ``canary.reconcile_interval_s`` the routes are rebuilt from the registry's aliases, the
version apps that are running and the rollout controller's weights; every
``canary.stats_flush_s`` the rollout records gathered on the request path go to the controller
(fire and forget) and the capture queue's drop counter goes to the metrics. Per request nothing
here is read but memory.

The sources arrive injected (plain callables and a :class:`RolloutLink`), so this runs without
Ray in tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from drift.capture import CaptureQueue
from serving import metrics
from serving.canary.records import RolloutRecord
from serving.canary.routes import RolloutRoute
from serving.inference.routing import CanaryState

log = logging.getLogger("canaryserve.reconcile")
Aliases = Callable[[], Mapping[str, Mapping[str, int]]]  # model -> alias -> version
Running = Callable[[], dict[str, list[int]]]  # model -> versions whose app is running
RUNNING_REFRESH_S = 10.0


class RolloutLink(Protocol):
    async def routes(self) -> dict[str, RolloutRoute]:
        """The controller's routes ({} when no controller runs); raises when it does not answer."""
        ...

    def report(self, records: list[RolloutRecord]) -> bool:
        """Send records without waiting; False when there is no controller to send to."""
        ...


class Reconciler:
    def __init__(
        self,
        canary: CanaryState,
        aliases: Aliases,
        running: Running,
        rollouts: RolloutLink,
        capture: CaptureQueue | None = None,
    ) -> None:
        self._canary = canary
        self._aliases = aliases
        self._running = running
        self._rollouts = rollouts
        self._capture = capture
        self._last_rollouts: dict[str, RolloutRoute] = {}
        self._last_running: dict[str, list[int]] | None = None
        self._running_at = 0.0
        self._dropped_reported = 0

    async def reconcile(self) -> None:
        """Rebuild the routes once. An unreachable controller keeps the last known rollouts."""
        aliases = await asyncio.to_thread(self._aliases)
        try:
            rollouts = await asyncio.wait_for(self._rollouts.routes(), timeout=10)
            self._last_rollouts = rollouts
        except Exception as e:
            log.warning("rollout controller unreachable: %r", e)
            rollouts = self._last_rollouts
        running = await self._running_apps(aliases, rollouts)
        self._canary.apply(aliases, running, rollouts)
        metrics.set_routes(self._canary.routes, {m: r.state for m, r in rollouts.items()})

    async def _running_apps(
        self, aliases: Mapping[str, Mapping[str, int]], rollouts: dict[str, RolloutRoute]
    ) -> dict[str, list[int]]:
        """The running version apps, asked again only when a version the aliases or rollouts
        name is not among the last answer, or every ``RUNNING_REFRESH_S``: Serve's status call
        cost the ingress ~3 % of a core at a 2 s interval (it pickles each deployment's router
        config), for an answer that changes only when a version is deployed or retired."""
        named = {(m, v) for m, a in aliases.items() for v in a.values()}
        named |= {(m, v) for m, r in rollouts.items() for v in (r.champion, r.challenger)}
        last = self._last_running
        fresh = time.monotonic() - self._running_at < RUNNING_REFRESH_S
        if last is not None and fresh and all(v in last.get(m, ()) for m, v in named):
            return last
        self._last_running = await asyncio.to_thread(self._running)
        self._running_at = time.monotonic()
        return self._last_running

    def flush(self) -> None:
        """Hand the gathered rollout records to the controller; count dropped drift rows."""
        if self._capture is not None:
            dropped = self._capture.dropped_rows
            metrics.count_dropped_drift_rows(dropped - self._dropped_reported)
            self._dropped_reported = dropped
        records = self._canary.take_records()
        for rec in records:
            route = self._canary.routes.get(rec.model)
            if rec.kind == "shadow" and rec.agreement is not None and route and route.challenger:
                metrics.set_shadow_agreement(rec.model, route.challenger, float(rec.agreement))
        if records and not self._rollouts.report(records):
            self._canary.dropped_records += len(records)

    async def reconcile_loop(self, interval_s: float) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception as e:  # keep serving with the last known routes
                log.warning("reconcile failed: %r", e)
            metrics.refresh_gauges()  # gauges not re-reported would age out of Ray's export
            await asyncio.sleep(interval_s)

    async def flush_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.flush()
            except Exception as e:
                log.warning("flushing rollout records failed: %r", e)
