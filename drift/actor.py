"""The drift monitor as a Ray actor: one per cluster, named, detached, restarted by Ray.

Everything it acknowledged (rows, reports, alerts) is in SQLite under ``<data>/drift`` and the
report files next to it, so a restart loses nothing already acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import ray

from drift.alerts import post_webhook
from drift.features import FEATURES_VERSION
from drift.monitor import MONITOR_NAME, DriftMonitor
from drift.reference.baseline import BaselineRequest, dir_rows
from model_registry.mlflow_store import MlflowModelStore
from model_registry.settings import RegistryRef
from model_registry.store import ModelRef
from serving import metrics
from serving.cluster.actors import TickingActor, ensure_actor, get_actor, lower_priority
from serving.config import PlatformConfig
from serving.rollouts.evidence import DriftAsk, DriftEvidence, EvidencePending

log = logging.getLogger("canaryserve.drift")
PRUNE_EVERY_S = 3600.0
ALIASES_TTL_S = 10.0
EVIDENCE_WAIT_S = 3.0  # how long the controller's round waits for a rollout measurement
KEEP_ASKS = 32
# In the controller's process: the measurement running for a window, and the last finished.
_in_flight: dict[DriftAsk, Any] = {}
_finished: dict[DriftAsk, DriftEvidence | None] = {}


class MonitorActor(TickingActor):
    def __init__(self, config: PlatformConfig, registry: RegistryRef) -> None:
        super().__init__(config.drift.schedule_tick_s)
        # Drift reports are background work: on a node shared with replicas they must not take
        # CPU from requests. Again at each tick, for threads Ray or asyncio started since.
        lower_priority(config.drift.monitor_nice, config.drift.monitor_idle)
        self._config = config
        data_dir = registry.data_path
        self._store = MlflowModelStore(
            tracking_uri=registry.tracking_uri, models_dir=registry.models_dir
        )
        self._aliases: tuple[float, dict[str, int]] = (0.0, {})
        spec = config.drift
        url = spec.alert_webhook_url
        self.monitor = DriftMonitor(
            spec,
            data_dir / "drift",
            references=self._store.reference,
            champions=self._champions,
            notify=(lambda alert: post_webhook(url, alert)) if url else None,
            observe=metrics.observe_drift,
            freeze=self._freeze,
        )
        self.target = self.monitor  # reports and views (``call``) are monitor methods
        self._last_prune = 0.0
        self._warm_up()

    def _warm_up(self) -> None:
        """Pay the one-time costs (MLflow client, Evidently's lazy imports and first render,
        seconds of CPU) at start, before traffic, not in the middle of it at the first report."""
        import tempfile

        import numpy as np
        import pandas as pd

        from drift.evidently_adapter import compute_drift

        try:
            self._champions()
            frame = pd.DataFrame({"x": np.arange(40.0), "y": np.arange(40.0) % 7})
            with tempfile.TemporaryDirectory() as tmp:
                compute_drift(frame, frame, html_path=Path(tmp) / "warm.html")
        except Exception as e:  # warm-up is an optimisation; the real calls report errors
            log.warning("drift monitor warm-up failed: %r", e)

    def _freeze(
        self, model: str, version: int, frame: Any, source: str, meta: dict[str, Any]
    ) -> dict[str, Any]:
        return self._store.log_reference(
            model, version, frame, source=source, features=FEATURES_VERSION, replace=True, meta=meta
        )

    async def baseline(self, request: BaselineRequest) -> dict[str, Any]:
        """Freeze a baseline (``drift.reference.baseline``). A folder's images are run through
        the version here, outside the monitor's lock: reports and status keep answering."""
        self._ensure_loop()
        return await asyncio.to_thread(self._baseline, request)

    def _baseline(self, request: BaselineRequest) -> dict[str, Any]:
        if request.source == "traffic":
            frame = self._locked(self.monitor.traffic_baseline, request)
            detail: dict[str, Any] = {"rows_from": "traffic"}
        else:
            from deployments.loader import load_model

            resolved = self._store.resolve(ModelRef(request.model, version=request.version))
            model = load_model(resolved.path)
            frame, detail = dir_rows(
                request, resolved.manifest.task, model.predict, min_rows=self._config.drift.min_rows
            )
        return dict(self._locked(self.monitor.freeze_baseline, request, frame, detail))

    def _champions(self) -> dict[str, int]:
        at, cached = self._aliases
        if time.time() - at > ALIASES_TTL_S:
            cached = {}
            for model in self._config.models:
                champion = self._store.aliases(model).get("champion")
                if champion is not None:
                    cached[model] = champion
            self._aliases = (time.time(), cached)
        return cached

    def tick(self) -> None:
        lower_priority(self._config.drift.monitor_nice, self._config.drift.monitor_idle)
        self.monitor.run_scheduled()
        metrics.refresh_gauges()  # drift gauges set at the last report, kept in Ray's export
        if time.time() - self._last_prune > PRUNE_EVERY_S:
            self._last_prune = time.time()
            log.info("drift retention: %s", self.monitor.prune())

    async def ingest(self, rows: list[dict[str, Any]]) -> int:
        # Rows are written by the caller's thread without the report lock: ingest stays fast
        # while a report runs (SQLite serialises the writes).
        self._ensure_loop()
        return await asyncio.to_thread(self.monitor.ingest, rows)


def ensure_monitor(config: PlatformConfig, registry: RegistryRef) -> Any:
    return ensure_actor(MonitorActor, MONITOR_NAME, config, registry)


def get_monitor() -> Any | None:
    return get_actor(MONITOR_NAME)


def rollout_drift(
    model: str, champion: int, challenger: int, since: float, min_rows: int
) -> DriftEvidence | None:
    """The rollout controller's drift source: what the monitor measured for a rollout window
    (None when no monitor runs). Handed to the controller by app assembly; runs in the
    controller's process.

    It waits at most :data:`EVIDENCE_WAIT_S` for the monitor, whose reports run at the lowest
    priority: while a measurement is still running it answers the last finished one for the
    same window (fewer rows, never another window's), or raises ``EvidencePending`` when there is
    none yet. The next ask picks the running measurement up: one at a time per window, never a
    queue of them behind a busy monitor."""
    ask: DriftAsk = (model, int(champion), int(challenger), float(since), int(min_rows))
    ref = _in_flight.get(ask)
    if ref is None:
        monitor = get_monitor()
        if monitor is None:
            return None
        ref = _in_flight[ask] = monitor.call.remote("rollout_drift", *ask)
    ready, _ = ray.wait([ref], timeout=EVIDENCE_WAIT_S)
    if ready:
        del _in_flight[ask]
        _finished[ask] = ray.get(ref)  # a monitor error is raised here, to the caller
    for kept in (_in_flight, _finished):
        while len(kept) > KEEP_ASKS:  # oldest windows first: dicts keep insertion order
            del kept[next(iter(kept))]
    if ask not in _finished:
        raise EvidencePending(f"the drift monitor is still measuring {model} v{challenger}")
    return _finished[ask]
