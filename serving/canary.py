"""The ingress side of canaries: routes, per-request decisions, fallbacks, shadows, reports.

``CanaryState`` lives in each ingress replica. Every few seconds it reconciles with the source
of truth (MLflow aliases for champion/challenger, the rollout controller for weights and shadow
share, Serve for which version applications are running); per request it only reads memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ray.exceptions import RayActorError

from serving.breaker import Breakers
from serving.compare import agreement
from serving.config import CanarySpec, PlatformConfig
from serving.errors import CanaryError, ModelFailure
from serving.router import ModelRoute, Router, RoutingDecision

log = logging.getLogger("canaryserve.canary")
MAX_PENDING_RECORDS = 20_000
Nodes = tuple[tuple[str, str, str], ...]  # (node name, model, output kind)
Capture = Callable[[Nodes, dict[str, int], dict[str, Any]], None]


async def predict(handle: Any, item: Any, attempts: int = 3) -> Any:
    """One item through a deployment handle, sent again if the replica holding it was lost.

    A replica that dies mid-call (killed, OOM, its node gone) fails only the calls it held, with
    ``RayActorError`` (``ActorDiedError``/``ActorUnavailableError``); inference is idempotent,
    so the item goes to the deployment again and Serve's router picks a live replica. What a
    model raised (``RayTaskError``) is an answer, not a lost replica, and is never retried."""
    for attempt in range(1, attempts + 1):
        try:
            return await handle.predict.remote(item)
        except RayActorError as e:
            if attempt == attempts:
                raise
            log.warning("replica lost (%s); sending the item again", type(e).__name__)
    raise AssertionError("unreachable")


class ChallengerFailed(Exception):
    """A challenger call failed: the request is re-run on champions (never mixed versions)."""

    def __init__(self, model: str, version: int) -> None:
        super().__init__(f"{model} v{version} failed")
        self.model, self.version = model, version


class CanaryState:
    def __init__(
        self, config: PlatformConfig, routes: dict[str, ModelRoute], running: dict[str, list[int]]
    ) -> None:
        self.config = config
        spec: CanarySpec = config.canary
        self.spec = spec
        self.routes = routes
        self.running = running
        self.router = Router()
        self.breakers = Breakers(
            spec.breaker_failures, spec.breaker_window_s, spec.breaker_cooldown_s
        )
        self.records: deque[dict[str, Any]] = deque(maxlen=MAX_PENDING_RECORDS)
        self.dropped_records = 0
        self.shadow_in_flight = 0
        self.shadow_skipped = 0
        self.last_reconcile: float | None = None

    # --- reconcile (background, every few seconds) -------------------------------------------

    def apply(
        self,
        aliases: dict[str, dict[str, int]],
        running: dict[str, list[int]],
        rollouts: dict[str, dict[str, Any]],
    ) -> None:
        """Swap in new routes built from the registry, Serve status and the controller."""
        routes: dict[str, ModelRoute] = {}
        for model in self.config.models:
            run = running.get(model, [])
            current = self.routes.get(model)
            champion = aliases.get(model, {}).get("champion")
            if champion not in run:
                # The alias moved to a version whose replicas are not up yet: keep serving
                # what we had rather than failing requests.
                champion = current.champion if current is not None else (run[0] if run else None)
            if champion is None:
                continue
            ro = rollouts.get(model) or {}
            challenger = ro.get("challenger")
            if challenger in run and challenger != champion:
                routes[model] = ModelRoute(
                    model,
                    champion,
                    challenger,
                    float(ro.get("weight", 0.0)),
                    float(ro.get("shadow_share", 0.0)),
                    ro.get("rollout_id"),
                )
            else:
                routes[model] = ModelRoute(model, champion)
        self.routes = routes
        self.running = running
        self.last_reconcile = time.time()

    # --- per request -------------------------------------------------------------------------

    def decide(self, models: list[str], pins: dict[str, int], key: str | None) -> RoutingDecision:
        routes = dict(self.routes)
        for model in models:
            route = routes.get(model)
            if route is None or route.challenger is None:
                continue
            if not self.breakers.get(model, route.challenger).allow():
                # Open circuit: the champion takes the challenger's traffic, and the
                # controller hears about it (it is a failed check).
                routes[model] = dataclasses.replace(route, weight=0.0, shadow_share=0.0)
                self.record(route, kind="breaker")
        # Pins to versions served outside the rollout (listed in the config) are honoured too.
        extra = {
            m: v
            for m, v in pins.items()
            if m in routes and v not in routes[m].served and v in self.running.get(m, [])
        }
        decision = self.router.decide(
            models, routes, {m: v for m, v in pins.items() if m not in extra}, key
        )
        if extra:
            per_model = dict(decision.per_model)
            for m, v in extra.items():
                if m in per_model:
                    per_model[m] = dataclasses.replace(
                        per_model[m], version=v, pinned=True, arm="champion", shadow_version=None
                    )
            decision = RoutingDecision(per_model)
        return decision

    def caller(
        self,
        decision: RoutingDecision,
        handle: Callable[[str, int], Any],
        request_id: str,
        shadow: bool = False,
        versions: dict[str, int] | None = None,
    ) -> Callable[[str, list[Any]], Awaitable[list[Any]]]:
        versions = versions or decision.versions()

        async def call(model: str, items: list[Any]) -> list[Any]:
            version = versions[model]
            node = decision.per_model.get(model)
            on_challenger = shadow or (node is not None and node.arm == "challenger")
            route = self.routes.get(model)
            t0 = time.perf_counter()
            try:
                h = handle(model, version)
                calls = asyncio.gather(*(predict(h, x) for x in items))
                if on_challenger:
                    # A challenger that hangs (or whose replicas are gone) must not hold the
                    # caller: past its budget it counts as failed and the request re-runs.
                    calls = asyncio.wait_for(calls, self.spec.challenger_timeout_s)
                out = list(await calls)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # anything a replica raised, typed errors included
                cause = getattr(e, "cause", e)
                if isinstance(cause, CanaryError) and cause.status_code < 500 and not on_challenger:
                    # The champion refused the input (e.g. too small for the model): the
                    # caller's 4xx, not a model failure. (A challenger refusing what the
                    # champion takes is the challenger's failure: the request re-runs.)
                    raise cause from None
                ms = (time.perf_counter() - t0) * 1000
                if on_challenger and route is not None and route.challenger == version:
                    self.breakers.get(model, version).record_failure()
                    self.record(route, arm="challenger", ok=False, latency_ms=ms)
                    if not shadow and not (node is not None and node.pinned):
                        raise ChallengerFailed(model, version) from e
                log.error("request %s: %s v%s failed: %r", request_id, model, version, e)
                raise ModelFailure(f"{model} v{version} failed") from e
            ms = (time.perf_counter() - t0) * 1000
            counted = not (shadow and route is not None and version != route.challenger)
            if route is not None and route.rollout_id is not None and counted:
                arm = "challenger" if version == route.challenger else "champion"
                if arm == "challenger":
                    self.breakers.get(model, version).record_success()
                self.record(route, arm=arm, ok=True, latency_ms=ms)
            return out

        return call

    def record(self, route: ModelRoute, kind: str = "call", **fields: Any) -> None:
        if route.rollout_id is None:
            return
        if len(self.records) == self.records.maxlen:
            self.dropped_records += 1
        self.records.append(
            {
                "rollout_id": route.rollout_id,
                "model": route.model,
                "ts": time.time(),
                "kind": kind,
                **fields,
            }
        )

    def take_records(self) -> list[dict[str, Any]]:
        out = list(self.records)
        self.records.clear()
        return out

    # --- shadows -----------------------------------------------------------------------------

    def maybe_shadow(
        self,
        decision: RoutingDecision,
        nodes_of: Callable[[str], Nodes],
        primary_raw: dict[str, Any],
        run: Callable[[dict[str, int], dict[str, Any]], Awaitable[Any]],
        capture: Capture | None = None,
    ) -> None:
        """Mirror the request to each shadowed challenger in the background, capped.
        ``nodes_of(model)`` gives the (node, model, output kind) of the model's nodes;
        ``capture(nodes, versions, raw)`` receives each successful shadow's node outputs."""
        for model, version in decision.shadows().items():
            route = self.routes.get(model)
            if route is None or route.challenger != version:
                continue
            if self.shadow_in_flight >= self.spec.shadow_max_concurrency:
                self.shadow_skipped += 1  # the cap protects callers on a small machine
                continue
            versions = {**decision.versions(), model: version}
            self.shadow_in_flight += 1
            asyncio.get_running_loop().create_task(
                self._shadow(route, versions, nodes_of(model), primary_raw, run, capture)
            )

    async def _shadow(
        self,
        route: ModelRoute,
        versions: dict[str, int],
        nodes: Nodes,
        primary_raw: dict[str, Any],
        run: Callable[[dict[str, int], dict[str, Any]], Awaitable[Any]],
        capture: Capture | None = None,
    ) -> None:
        try:
            raw: dict[str, Any] = {}
            await asyncio.wait_for(run(versions, raw), self.spec.shadow_timeout_s)
            if capture is not None:
                capture(nodes, versions, raw)
            scores = [
                agreement(kind, primary_raw[name], raw[name])
                for name, _model, kind in nodes
                if name in primary_raw and name in raw
            ]
            value = sum(scores) / len(scores) if scores else None
            self.record(route, kind="shadow", agreement=value)
        except Exception as e:  # a failing or slow shadow never reaches the caller
            log.info("shadow of %s v%s failed: %r", route.model, route.challenger, e)
            self.record(route, kind="shadow", agreement=None)
        finally:
            self.shadow_in_flight -= 1
