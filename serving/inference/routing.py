"""The ingress side of canaries: current routes, per-request decisions, model calls, records.

``CanaryState`` lives in each ingress replica. Every few seconds it is handed new routes
(``apply``: MLflow aliases for champion/challenger, the rollout controller for weights and
shadow share, Serve for which version applications are running); per request it only reads
memory. Every model call it makes for a rollout's model becomes a typed
:class:`~serving.canary.records.RolloutRecord` for the controller.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from ray.exceptions import RayActorError

from serving.canary.breaker import Breakers
from serving.canary.records import RecordKind, RolloutRecord
from serving.canary.routes import RolloutRoute, build_routes
from serving.canary.split import Arm, ModelRoute, NodeDecision, Router, RoutingDecision
from serving.config import CanarySpec, PlatformConfig
from serving.errors import CanaryError, ModelFailure

log = logging.getLogger("canaryserve.canary")
MAX_PENDING_RECORDS = 20_000
# (model, version) -> a deployment handle of that version's application.
HandleSource = Callable[[str, int], Any]


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
    """A challenger call failed: the request is re-run on champions (never mixed versions).

    ``refused`` is set when the challenger refused the input with a 4xx: whether that was the
    input's fault or the challenger's is for the champion's re-run to tell (see
    :meth:`CanaryState.challenger_refused`), so nothing was counted yet."""

    def __init__(
        self,
        model: str,
        version: int,
        refused: CanaryError | None = None,
        latency_ms: float | None = None,
        key_hash: str | None = None,
    ) -> None:
        super().__init__(f"{model} v{version} failed")
        self.model, self.version = model, version
        self.refused, self.latency_ms, self.key_hash = refused, latency_ms, key_hash


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
            failure_threshold=spec.breaker_failures,
            window_s=spec.breaker_window_s,
            cooldown_s=spec.breaker_cooldown_s,
        )
        self.records: deque[RolloutRecord] = deque(maxlen=MAX_PENDING_RECORDS)
        self.dropped_records = 0
        self.last_reconcile: float | None = None

    # --- reconcile (background, every few seconds) -------------------------------------------

    def apply(
        self,
        aliases: Mapping[str, Mapping[str, int]],
        running: dict[str, list[int]],
        rollouts: Mapping[str, RolloutRoute],
    ) -> None:
        """Swap in new routes built from the registry, Serve status and the controller."""
        self.routes = build_routes(self.config.models, self.routes, aliases, running, rollouts)
        self.running = running
        self.last_reconcile = time.time()

    # --- per request -------------------------------------------------------------------------

    def decide(self, models: list[str], pins: dict[str, int], key: str | None) -> RoutingDecision:
        routes = dict(self.routes)
        for model in models:
            route = routes.get(model)
            if route is None or route.challenger is None:
                continue
            if self.breakers.get(model, route.challenger).state == "open":
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
        return self._trial(decision, routes)

    def _trial(self, decision: RoutingDecision, routes: dict[str, ModelRoute]) -> RoutingDecision:
        """Ask the breaker only for requests the split sent to the challenger: a half-open
        breaker's one trial call must be one whose answer comes back to it (a pinned probe or a
        champion request would hold the trial, unanswered, for a whole cooldown)."""
        moved: dict[str, NodeDecision] = {}
        for m, d in decision.per_model.items():
            if d.arm != "challenger" or d.pinned or self.breakers.get(m, d.version).allow():
                continue
            # (A challenger pick is never mirrored: there is no shadow to drop.)
            moved[m] = dataclasses.replace(d, version=d.champion, arm="champion", fallback=True)
            self.record(routes[m], kind="breaker")
        if not moved:
            return decision
        return RoutingDecision({**decision.per_model, **moved})

    def caller(
        self,
        decision: RoutingDecision,
        handles: HandleSource,
        request_id: str,
        shadow: bool = False,
        versions: dict[str, int] | None = None,
    ) -> VersionedCaller:
        """The model caller a pipeline's ops use for this request (``versions``: the decided
        ones, or a shadow's)."""
        return VersionedCaller(self, decision, handles, request_id, shadow, versions)

    def record(
        self,
        route: ModelRoute,
        kind: RecordKind = "call",
        *,
        arm: Arm | None = None,
        ok: bool | None = None,
        latency_ms: float | None = None,
        agreement: float | None = None,
        key_hash: str | None = None,
    ) -> None:
        """One record for the controller when ``route`` is under a rollout (else nothing)."""
        if route.rollout_id is None:
            return
        if len(self.records) == self.records.maxlen:
            self.dropped_records += 1
        self.records.append(
            RolloutRecord(
                route.rollout_id,
                route.model,
                time.time(),
                kind,
                arm,
                ok,
                latency_ms,
                agreement,
                key_hash,
            )
        )

    def challenger_failed(
        self, model: str, version: int, latency_ms: float | None, key_hash: str | None
    ) -> None:
        """Count one failed call the split sent to the challenger: its breaker and its arm."""
        route = self.routes.get(model)
        if route is None or route.challenger != version:
            return  # the rollout ended meanwhile: nothing left to count against
        self.breakers.get(model, version).record_failure()
        self.record(route, arm="challenger", ok=False, latency_ms=latency_ms, key_hash=key_hash)

    def challenger_refused(self, failure: ChallengerFailed) -> None:
        """The challenger refused an input with a 4xx that the champions' re-run then took:
        the refusal was the challenger's failure. (Had the champions refused it too, the input
        was at fault, and a 4xx caused by the input is never counted against a challenger.)"""
        self.challenger_failed(failure.model, failure.version, failure.latency_ms, failure.key_hash)

    def take_records(self) -> list[RolloutRecord]:
        out = list(self.records)
        self.records.clear()
        return out


class VersionedCaller:
    """Calls the version of each model that one request (or its shadow) was routed to, and
    accounts for it: breaker, rollout records, challenger budget, 4xx pass-through."""

    def __init__(
        self,
        state: CanaryState,
        decision: RoutingDecision,
        handles: HandleSource,
        request_id: str,
        shadow: bool,
        versions: dict[str, int] | None,
    ) -> None:
        self._state = state
        self._decision = decision
        self._handles = handles
        self._request_id = request_id
        self._shadow = shadow
        self._versions = versions or decision.versions()

    async def __call__(self, model: str, items: list[Any]) -> list[Any]:
        state, shadow = self._state, self._shadow
        version = self._versions[model]
        node = self._decision.per_model.get(model)
        pinned = node is not None and node.pinned
        on_challenger = shadow or (node is not None and node.arm == "challenger")
        route = state.routes.get(model)
        # Only what the split chose is rollout evidence: a pinned probe is served and audited,
        # a shadow copy feeds the agreement records (``Shadows``) only; neither moves the
        # breaker nor counts as canary traffic.
        counted = (
            not shadow
            and not pinned
            and route is not None
            and route.rollout_id is not None
            and version in route.served
        )
        key = node.key_hash if node is not None else None
        t0 = time.perf_counter()
        try:
            h = self._handles(model, version)
            calls: Any = asyncio.gather(*(predict(h, x) for x in items))
            if on_challenger:
                # A challenger that hangs (or whose replicas are gone) must not hold the
                # caller: past its budget it counts as failed and the request re-runs.
                calls = asyncio.wait_for(calls, state.spec.challenger_timeout_s)
            out = list(await calls)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # anything a replica raised, typed errors included
            cause = getattr(e, "cause", e)
            refused = cause if isinstance(cause, CanaryError) and cause.status_code < 500 else None
            ms = (time.perf_counter() - t0) * 1000
            if on_challenger and counted and route is not None and route.challenger == version:
                if refused is not None:
                    # The input, or the challenger? The champion's re-run tells (see
                    # ``challenger_refused``); nothing is counted until then.
                    raise ChallengerFailed(
                        model, version, refused=refused, latency_ms=ms, key_hash=key
                    ) from e
                state.challenger_failed(model, version, ms, key)
                raise ChallengerFailed(model, version) from e
            if refused is not None:
                # A version refused the input (e.g. too small for the model): the caller's
                # 4xx, not a model failure.
                raise refused from None
            log.error("request %s: %s v%s failed: %r", self._request_id, model, version, e)
            raise ModelFailure(f"{model} v{version} failed") from e
        ms = (time.perf_counter() - t0) * 1000
        if counted and route is not None:
            arm: Arm = "challenger" if version == route.challenger else "champion"
            if arm == "challenger":
                state.breakers.get(model, version).record_success()
            state.record(route, arm=arm, ok=True, latency_ms=ms, key_hash=key)
        return out
