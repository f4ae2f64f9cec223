"""The rollout controller's logic: runs the analysis loop and moves MLflow aliases.

``RolloutManager`` is plain Python: its collaborators are injected (a rollout store, the model
registry, a :class:`Deployer`, a clock and a drift source), so its behaviour is testable
without Ray. The Ray actor around it is in ``serving.rollouts.controller.actor``.

Source of truth: MLflow aliases say what is champion and challenger; the rollout store says how
far each rollout got (step, weight, failed checks, events). The ingress reads both every few
seconds, never per request.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from model_registry.evaluation.labelled_actions import OFFLINE_ACCURACY, LabelledAccuracy
from model_registry.store import CHALLENGER, CHAMPION, ModelStore
from serving.canary.records import RolloutRecord
from serving.canary.routes import RolloutRoute
from serving.errors import CanaryError, InvalidRolloutSpec
from serving.pipelines.spec import PipelineSpec
from serving.rollouts import machine as sm
from serving.rollouts.checks import WindowStats
from serving.rollouts.controller.store import RolloutStore
from serving.rollouts.evidence import (
    PREDICTION_DRIFT,
    DriftAsk,
    DriftEvidence,
    DriftSource,
    EvidencePending,
)
from serving.rollouts.offline import OfflineSource
from serving.rollouts.pairing import check_challenger_pairing
from serving.rollouts.spec import parse_rollout_spec
from serving.rollouts.stats import RolloutStats

log = logging.getLogger("canaryserve.controller")
ACTIVE_ROUTE_STATES = ("shadow", "progressing", "paused")


class Deployer(Protocol):
    def ensure(self, model: str, version: int) -> None:
        """Start deploying a version if it is not deployed (returns at once)."""

    def ready(self, model: str, version: int) -> bool: ...

    def retire(self, model: str, version: int) -> None:
        """Drain and delete a version's deployment (no-op for versions the config pins)."""


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="seconds")


class RolloutManager:
    def __init__(
        self,
        store: RolloutStore,
        registry: ModelStore,
        deployer: Deployer,
        *,
        clock: Callable[[], float] = time.time,
        drain_delay_s: float,
        drift: DriftSource | None = None,
        offline: OfflineSource | None = None,
        pipelines: Mapping[str, PipelineSpec] | None = None,
    ) -> None:
        self.store = store
        self.drift = drift
        self.offline = offline
        self.pipelines = pipelines  # when given, a challenger must pair with their champions
        # (rollout id, champion, challenger) -> labelled scores: computed once per rollout.
        self._offline: dict[tuple[str, int, int], LabelledAccuracy] = {}
        self.registry = registry
        self.deployer = deployer
        self.clock = clock
        self.drain_delay_s = drain_delay_s
        self.stats = RolloutStats()
        self._drains: list[tuple[float, str, int]] = []  # (due, model, version)
        # A (re)started controller has no measurements for the windows in progress: start them
        # again, so the downtime neither counts against the progress deadline nor as data.
        now = self.clock()
        for r in self.store.list(active_only=True):
            fresh = sm.restart_window(r, now)
            if fresh is not r:
                self.store.save(fresh)

    # --- commands ----------------------------------------------------------------------------

    def start(self, raw_spec: dict[str, Any], actor: str = "unknown") -> dict[str, Any]:
        spec = parse_rollout_spec(raw_spec)
        aliases = self.registry.aliases(spec.model)  # UnknownModel if the model does not exist
        self.registry.get(f"{spec.model}/{spec.challenger_version}")  # UnknownModelVersion
        champion = aliases.get(CHAMPION)
        if champion is None:
            raise InvalidRolloutSpec(f"{spec.model!r} has no champion alias to compare against")
        if champion == spec.challenger_version:
            raise InvalidRolloutSpec(
                f"{spec.model} v{spec.challenger_version} is already the champion"
            )
        if self.pipelines:
            check_challenger_pairing(
                self.pipelines, self.registry, spec.model, spec.challenger_version
            )
        rollout_id = f"{spec.model}-v{spec.challenger_version}-{uuid.uuid4().hex[:8]}"
        r, events = sm.start(spec, champion, rollout_id, self.clock())
        events = [_with_actor(e, actor) for e in events]
        # RolloutConflict when the model has an active rollout: the store checks it in the same
        # transaction as the insert, so two concurrent starts cannot both pass.
        self.store.create(r, events)
        self.registry.set_alias(spec.model, CHALLENGER, spec.challenger_version)
        self.deployer.ensure(spec.model, spec.challenger_version)
        return self.describe(rollout_id)

    def pause(self, rollout_id: str, actor: str = "unknown") -> dict[str, Any]:
        r = self.store.get(rollout_id)
        r2, events = sm.pause(r, self.clock())
        self.store.save(r2, [_with_actor(e, actor) for e in events])
        return self.describe(rollout_id)

    def resume(self, rollout_id: str, actor: str = "unknown") -> dict[str, Any]:
        r = self.store.get(rollout_id)
        r2, events = sm.resume(r, self.clock())
        self.store.save(r2, [_with_actor(e, actor) for e in events])
        return self.describe(rollout_id)

    def promote(self, rollout_id: str, actor: str = "unknown") -> dict[str, Any]:
        r = self.store.get(rollout_id)
        r2, events, action = sm.promote_now(r, self.clock())
        self._apply(r2, [_with_actor(e, actor) for e in events], action)
        return self.describe(rollout_id)

    def abort(self, rollout_id: str, actor: str = "unknown") -> dict[str, Any]:
        r = self.store.get(rollout_id)
        r2, events, action = sm.abort(r, self.clock())
        self._apply(r2, [_with_actor(e, actor) for e in events], action)
        return self.describe(rollout_id)

    # --- views -------------------------------------------------------------------------------

    def describe(self, rollout_id: str) -> dict[str, Any]:
        r = self.store.get(rollout_id)
        return {**r.to_dict(), "events": [e.to_dict() for e in self.store.events(rollout_id)]}

    def list(self, active_only: bool = False) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.store.list(active_only=active_only)]

    def routes(self) -> dict[str, RolloutRoute]:
        """What the ingress needs per model under rollout: challenger, weight, shadow share."""
        out: dict[str, RolloutRoute] = {}
        for r in self.store.list(active_only=True):
            if r.state not in ACTIVE_ROUTE_STATES:
                continue  # pending: the challenger does not serve yet
            shadow = r.spec.mode == "shadow-then-canary"
            out[r.spec.model] = RolloutRoute(
                rollout_id=r.id,
                challenger=r.spec.challenger_version,
                champion=r.champion_version,
                # 0 while shadowing, paused or not: the machine gives no weight before step 0.
                weight=float(r.weight),
                shadow_share=float(r.spec.shadow_share) if shadow else 0.0,
                shadow_max_concurrency=int(r.spec.shadow_max_concurrency),
                state=r.state,
            )
        return out

    def report(self, records: builtins.list[RolloutRecord]) -> int:
        """Measurements from an ingress replica; returns how many were kept."""
        return self.stats.add(records)

    # --- the loop ----------------------------------------------------------------------------

    def drift_asks(self) -> dict[str, DriftAsk]:
        """What this tick would ask the drift source, by rollout id: one per judged rollout
        that runs the ``prediction_drift`` check and whose window is due to close (only the
        closing look uses the evidence, so a window costs the monitor one measurement, not one
        per tick). The controller actor fetches these outside its lock (the monitor may take a
        while) and hands the answers to :meth:`tick`."""
        asks = {}
        now = self.clock()
        for r in self.store.list(active_only=True):
            ask = self._drift_ask(r)
            due = now - sm.window_started_at(r) >= r.spec.interval_s
            if ask is not None and due and r.state not in ("pending", "paused"):
                asks[r.id] = ask
        return asks

    def fetch_drift(self, asks: Mapping[str, DriftAsk]) -> dict[DriftAsk, DriftEvidence]:
        """The drift source's answers to ``asks`` (thread-safe: the controller actor calls it
        outside its lock). An ask the source is still measuring (``EvidencePending``) gets a
        pending answer, which holds the window open until the measurement is in; one it fails
        on gets none: no data is "no verdict", never a failed check."""
        source = self.drift
        if source is None:
            return {}
        got: dict[DriftAsk, DriftEvidence] = {}
        for rollout_id, ask in asks.items():
            try:
                evidence = source(*ask)
            except EvidencePending as e:
                log.info("rollout %s: no drift evidence yet: %s", rollout_id, e)
                got[ask] = DriftEvidence(pending=True)  # the window waits for it
                continue
            except Exception as e:
                log.warning("rollout %s: drift monitor unavailable: %r", rollout_id, e)
                continue
            if evidence is not None:
                got[ask] = evidence
        return got

    def tick(self, drift: Mapping[DriftAsk, DriftEvidence] | None = None) -> None:
        """One round over the active rollouts. ``drift``: the evidence already fetched for
        :meth:`drift_asks` (an ask without an answer gets none this round); without it the
        drift source is asked here first."""
        if drift is None:
            drift = self.fetch_drift(self.drift_asks())
        now = self.clock()
        for r in self.store.list(active_only=True):
            try:
                self._tick_one(r, now, drift)
            except CanaryError as e:
                log.error("rollout %s: %s", r.id, e.message)
            except Exception:
                log.exception("rollout %s: tick failed", r.id)
        self._run_drains(now)

    def _tick_one(self, r: sm.Rollout, now: float, drift: Mapping[DriftAsk, DriftEvidence]) -> None:
        model, version = r.spec.model, r.spec.challenger_version
        if r.state == "pending":
            # Weight only once the challenger's replicas are ready.
            if self.deployer.ready(model, version):
                r2, events, action = sm.activate(r, now)
                self._apply(r2, events, action)
            else:
                self.deployer.ensure(model, version)
            return
        if not self.deployer.ready(model, version):
            # Its replicas went away under a rollout (a paused canary still routes its weight):
            # bring them back. Calls meanwhile fail over to the champion and count against the
            # challenger.
            self.deployer.ensure(model, version)
        if r.state == "paused":
            return
        stats = self.stats.window(
            r.id, sm.window_started_at(r), max_per_key=r.spec.max_requests_per_key
        )
        self._add_drift(r, stats, drift)
        self._add_offline(r, stats)
        r2, events, action = sm.tick(r, stats, now)
        if r2 is not r:  # tick returns its argument when nothing happened
            self._apply(r2, events, action)

    def _drift_ask(self, r: sm.Rollout) -> DriftAsk | None:
        wanted = [c for c in r.spec.checks if c.name == PREDICTION_DRIFT and c.enabled]
        if not wanted or self.drift is None:
            return None
        min_rows = wanted[0].min_samples or r.spec.min_requests
        return (
            r.spec.model,
            r.champion_version,
            r.spec.challenger_version,
            sm.window_started_at(r),
            min_rows,
        )

    def _add_drift(
        self, r: sm.Rollout, stats: WindowStats, drift: Mapping[DriftAsk, DriftEvidence]
    ) -> None:
        """Put the drift evidence in ``stats.extra`` when the rollout runs that check and its
        window has an answer (none when the window moved on since it was asked)."""
        ask = self._drift_ask(r)
        if ask is not None and ask in drift:
            stats.extra[PREDICTION_DRIFT] = drift[ask]

    def _add_offline(self, r: sm.Rollout, stats: WindowStats) -> None:
        """Put both versions' labelled-track scores in ``stats.extra`` when the rollout runs
        ``offline_accuracy`` (scored once per rollout: the versions and the set are fixed)."""
        wanted = any(c.name == OFFLINE_ACCURACY and c.enabled for c in r.spec.checks)
        if not wanted or self.offline is None:
            return
        key = (r.id, r.champion_version, r.spec.challenger_version)
        if key not in self._offline:
            try:
                scored = self.offline(self.registry, r.spec.model, key[1], key[2])
            except Exception as e:  # no data is "no verdict", never a failed check
                log.warning("rollout %s: labelled scores unavailable: %r", r.id, e)
                return
            if scored is None:
                return
            self._offline[key] = scored
        stats.extra[OFFLINE_ACCURACY] = self._offline[key]

    def _apply(self, r: sm.Rollout, events: builtins.list[sm.Event], action: sm.Action) -> None:
        model, challenger = r.spec.model, r.spec.challenger_version
        now = self.clock()
        if action.kind == "promote":
            old = r.champion_version
            reason = action.reason  # a stable code: checks_passed, manual_promotion
            self.registry.set_alias(model, CHAMPION, challenger)
            self.registry.delete_alias(model, CHALLENGER)
            self.registry.set_tag(model, old, "canaryserve.replaced_at", _iso(now))
            self.registry.set_tag(model, old, "canaryserve.replaced_by", str(challenger))
            self.registry.set_tag(
                model, old, "canaryserve.replaced_reason", f"rollout {r.id}: {reason}"
            )
            self.registry.set_tag(model, challenger, "canaryserve.promoted_at", _iso(now))
            self.registry.set_tag(model, challenger, "canaryserve.promoted_by_rollout", r.id)
            self._drains.append((now + self.drain_delay_s, model, old))
        elif action.kind == "rollback":
            self.registry.delete_alias(model, CHALLENGER)
            # The stable code: the failed check's name, insufficient_data or aborted.
            self.registry.set_tag(model, challenger, "canaryserve.rollback.check", action.reason)
            failed = action.failed_check
            if failed is not None and failed.value is not None:
                self.registry.set_tag(
                    model, challenger, "canaryserve.rollback.value", f"{failed.value:.6g}"
                )
                self.registry.set_tag(
                    model, challenger, "canaryserve.rollback.threshold", f"{failed.threshold:.6g}"
                )
            if failed is not None and failed.report_id:
                self.registry.set_tag(
                    model, challenger, "canaryserve.rollback.report_id", failed.report_id
                )
            self.registry.set_tag(model, challenger, "canaryserve.rollback.rollout_id", r.id)
            self.registry.set_tag(model, challenger, "canaryserve.rollback.at", _iso(now))
            self._drains.append((now + self.drain_delay_s, model, challenger))
        self.store.save(r, events)
        if not sm.is_active(r):
            self.stats.forget(r.id)

    def _needed(self, model: str, version: int) -> bool:
        if self.registry.aliases(model).get(CHAMPION) == version:
            return True
        return any(
            r.spec.model == model and r.spec.challenger_version == version
            for r in self.store.list(active_only=True)
        )

    def _run_drains(self, now: float) -> None:
        due = [d for d in self._drains if d[0] <= now]
        self._drains = [d for d in self._drains if d[0] > now]
        for _, model, version in due:
            if self._needed(model, version):
                # Needed again since the drain was scheduled (a new rollout, a promotion).
                log.warning("not retiring %s v%s: it is in use again", model, version)
                continue
            try:
                self.deployer.retire(model, version)
            except Exception:
                log.exception("retiring %s v%s failed", model, version)


def _with_actor(event: sm.Event, actor: str) -> sm.Event:
    return dataclasses.replace(event, detail={**event.detail, "actor": actor})
