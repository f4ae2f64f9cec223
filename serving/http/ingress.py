"""The ingress deployment: the Ray side of the HTTP API, one per ingress replica.

It builds the replica's services (data plane, gate, links to the actors) in its constructor,
gives Serve the FastAPI app (``__serve_build_asgi_app__``), and runs the background loops in
the app's lifespan. Everything Ray-specific of the ingress is here: version handles, the
rollout controller and drift monitor links, the capture hand-over on the replica's loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from ray import serve

from deployments.base import deployment_name
from drift.actor import get_monitor
from drift.capture import CaptureQueue, CpuBudget
from drift.embeddings import default_embedder
from model_registry.mlflow_store import MlflowModelStore
from model_registry.settings import RegistryRef
from serving.audit import AuditWriter, open_store
from serving.canary.records import RolloutRecord
from serving.canary.routes import RolloutRoute, VersionTable, routes_from_table
from serving.cluster.versions import LocalVersionApps
from serving.config import PlatformConfig
from serving.errors import ServiceUnavailable, reraise_cause
from serving.http.app import build_app
from serving.http.gate import Gate
from serving.http.services import Services
from serving.inference import CanaryState, DataPlane, Reconciler
from serving.rollouts.controller.actor import get_controller

log = logging.getLogger("canaryserve.ingress")


@serve.deployment(max_ongoing_requests=64)
@serve.ingress()
class Ingress:
    def __init__(self, config: PlatformConfig, table: VersionTable, registry: RegistryRef) -> None:
        self._config = config
        self._registry = registry
        self._registry_client: MlflowModelStore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        canary = CanaryState(
            config, routes_from_table(table), {m: list(v) for m, v in table.served.items()}
        )
        handles = ServeHandles()
        self._monitor = MonitorLink(get_monitor)
        self._controller = ControllerLink(get_controller)
        capture = None
        if config.drift.enabled:
            spec = config.drift
            capture = CaptureQueue(
                self._drift_sink,
                max_pending=spec.capture_queue,
                batch_size=spec.batch_size,
                flush_interval_s=spec.flush_interval_s,
                sample_rate=spec.sample_rate,
                embedder=default_embedder(registry.cache_path),
                embedding_sample_rate=spec.embedding_sample_rate,
                max_age_s=spec.capture_max_age_s,
                cpu_budget=CpuBudget(spec.capture_cpu_share),
                max_pending_bytes=spec.capture_queue_bytes,
            )
        audit = None
        if config.audit.enabled:
            # The store's input folder too: without it `store_inputs` would keep no body.
            store = open_store(config.audit, registry.data_path)
            audit = AuditWriter.from_spec(config.audit, store, store.inputs)
        gate = Gate(
            config.auth,
            config.auth.keys_file_in(registry.data_path),
            audit,
            config.audit.store_inputs,
        )
        plane = DataPlane(config, canary, handles, capture)
        self._services = Services(
            config,
            registry,
            plane,
            gate,
            handles,
            self._controller,
            self._monitor,
            self._store,
        )
        self._reconciler = Reconciler(
            canary, self._read_aliases, LocalVersionApps(config).running, self._controller, capture
        )

    async def __serve_build_asgi_app__(self) -> FastAPI:
        return build_app(self._services, self._lifespan)

    @asynccontextmanager
    async def _lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        self._loop = loop
        canary = self._config.canary
        self._tasks = [
            loop.create_task(self._reconciler.reconcile_loop(canary.reconcile_interval_s)),
            loop.create_task(self._reconciler.flush_loop(canary.stats_flush_s)),
        ]
        try:
            yield
        finally:
            for task in self._tasks:
                task.cancel()

    def _store(self) -> MlflowModelStore:
        # One store for the life of the replica: a new one opens its own MLflow client and
        # database engine, ~120 ms of CPU, which every reconcile (each 2 s) used to pay.
        if self._registry_client is None:
            self._registry_client = MlflowModelStore(
                tracking_uri=self._registry.tracking_uri, models_dir=self._registry.models_dir
            )
        return self._registry_client

    def _read_aliases(self) -> Mapping[str, Mapping[str, int]]:
        store = self._store()
        return {m: store.aliases(m) for m in self._config.models}

    def _drift_sink(self, rows: list[dict[str, Any]]) -> None:
        """Runs in the capture thread: hand a batch to the monitor, or raise (counted).

        The call itself is made on the replica's event loop, like every other Ray call of this
        process: a blocking ``ray.get`` from a second thread stalled the loop (p95 of requests
        doubled in ``load_tests/capture_cost``)."""
        loop = self._loop
        if loop is None:
            raise ServiceUnavailable("the ingress has not started its event loop yet")
        timeout = self._config.drift.send_timeout_s
        asyncio.run_coroutine_threadsafe(self._monitor.ingest(rows, timeout), loop).result(
            timeout + 1
        )


# --- links to Ray ------------------------------------------------------------------------------


class ServeHandles:
    """``(model, version) -> DeploymentHandle`` of that version's application, cached."""

    def __init__(self) -> None:
        self._handles: dict[tuple[str, int], Any] = {}

    def __call__(self, model: str, version: int) -> Any:
        key = (model, version)
        handle = self._handles.get(key)
        if handle is None:
            name = deployment_name(model, version)
            handle = serve.get_deployment_handle(name, app_name=name)
            self._handles[key] = handle
        return handle


class ActorLink:
    """A named singleton actor (rollout controller or drift monitor), looked up lazily."""

    def __init__(self, lookup: Callable[[], Any | None], what: str) -> None:
        self._lookup = lookup
        self._what = what
        self.handle: Any | None = None

    async def get(self) -> Any | None:
        if self.handle is None:
            self.handle = await asyncio.to_thread(self._lookup)
        return self.handle

    async def call(self, method: str, *args: Any, **kw: Any) -> Any:
        """A method of the actor's target; our own errors come back as they were raised."""
        return await self.direct("call", method, *args, **kw)

    async def direct(self, method: str, *args: Any, **kw: Any) -> Any:
        """A method of the actor itself (one that manages its own locking)."""
        actor = await self.get()
        if actor is None:
            raise ServiceUnavailable(f"the {self._what} is not running")
        try:
            return await getattr(actor, method).remote(*args, **kw)
        except Exception as e:
            reraise_cause(e)
            self.handle = None
            raise ServiceUnavailable(f"the {self._what} did not answer") from e


class ControllerLink(ActorLink):
    """The rollout controller as the data plane's rollout link."""

    def __init__(self, lookup: Callable[[], Any | None]) -> None:
        super().__init__(lookup, "rollout controller")

    async def routes(self) -> dict[str, RolloutRoute]:
        actor = await self.get()
        if actor is None:
            return {}
        try:
            routes: dict[str, RolloutRoute] = await actor.routes.remote()
        except Exception:
            self.handle = None
            raise
        return routes

    def report(self, records: list[RolloutRecord]) -> bool:
        actor = self.handle
        if actor is None:
            return False
        try:
            actor.report.remote(records)  # fire and forget: off the request path
        except Exception:
            return False
        return True


class MonitorLink(ActorLink):
    """The drift monitor: reports and views (``call``), and the capture hand-over."""

    def __init__(self, lookup: Callable[[], Any | None]) -> None:
        super().__init__(lookup, "drift monitor")

    async def ingest(self, rows: list[dict[str, Any]], timeout_s: float) -> None:
        monitor = await self.get()
        if monitor is None:
            raise ServiceUnavailable("no drift monitor is running")
        try:
            await asyncio.wait_for(monitor.ingest.remote(rows), timeout_s)
        except Exception:
            self.handle = None  # look it up again: Ray may have restarted it
            raise
