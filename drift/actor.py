"""The drift monitor as a Ray actor: one per cluster, named, detached, restarted by Ray.

Everything it acknowledged (rows, reports, alerts) is in SQLite under ``<data>/drift`` and the
report files next to it, so a restart loses nothing already acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

from drift.monitor import MONITOR_NAME, NAMESPACE, DriftMonitor, post_webhook

log = logging.getLogger("canaryserve.drift")
PRUNE_EVERY_S = 3600.0
ALIASES_TTL_S = 10.0


class MonitorActor:
    def __init__(self, config: Any, registry: dict[str, str]) -> None:
        from model_registry.mlflow_store import MlflowModelStore
        from serving import metrics

        self._config = config
        data_dir = Path(registry["data_dir"])
        self._store = MlflowModelStore(
            tracking_uri=registry["tracking_uri"], models_dir=data_dir / "models"
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
        )
        self._lock = threading.Lock()
        self._loop_task: asyncio.Task[None] | None = None
        self._last_prune = 0.0
        self.started_at = time.time()

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

    def _locked(self, fn: Any, *args: Any, **kw: Any) -> Any:
        with self._lock:
            return fn(*args, **kw)

    def _tick(self) -> None:
        self.monitor.run_scheduled()
        if time.time() - self._last_prune > PRUNE_EVERY_S:
            self._last_prune = time.time()
            log.info("drift retention: %s", self.monitor.prune())

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self._locked, self._tick)
            except Exception:
                log.exception("drift schedule tick failed")
            await asyncio.sleep(self._config.drift.schedule_tick_s)

    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._loop())

    async def ping(self) -> dict[str, Any]:
        self._ensure_loop()
        return {"started_at": self.started_at, "ingested": self.monitor.ingested}

    async def ingest(self, rows: list[dict[str, Any]]) -> int:
        # Rows are written by the caller's thread without the report lock: ingest stays fast
        # while a report runs (SQLite serialises the writes).
        self._ensure_loop()
        return await asyncio.to_thread(self.monitor.ingest, rows)

    async def call(self, method: str, *args: Any, **kw: Any) -> Any:
        """Reports and views, off the event loop; errors come back as CanaryError subclasses."""
        self._ensure_loop()
        return await asyncio.to_thread(self._locked, getattr(self.monitor, method), *args, **kw)

    async def html(self, report_id: str) -> str:
        return await asyncio.to_thread(self.monitor.reports.html, report_id)


def ensure_monitor(config: Any, registry: dict[str, str]) -> Any:
    import ray

    handle = (
        ray.remote(MonitorActor)
        .options(
            name=MONITOR_NAME,
            namespace=NAMESPACE,
            get_if_exists=True,
            lifetime="detached",
            num_cpus=0,
            max_restarts=-1,
            max_task_retries=0,
            max_concurrency=16,
        )
        .remote(config, registry)
    )
    ray.get(handle.ping.remote(), timeout=120)
    return handle


def get_monitor() -> Any | None:
    import ray

    try:
        return ray.get_actor(MONITOR_NAME, namespace=NAMESPACE)
    except ValueError:
        return None
