"""The rollout controller as a Ray actor: one per cluster, named, detached, restarted by Ray.

``RolloutController`` wraps a :class:`~serving.rollouts.manager.RolloutManager` and runs its
loop; its state is in the SQLite rollout store under the data dir, so a restarted controller
resumes where the last one stopped. What it is handed crosses a process boundary, so it is
typed: the platform config, a :class:`~model_registry.settings.RegistryRef`, the plug-in
:class:`~serving.rollouts.checks.Check` s to register, and the drift source (a picklable
module-level function, returning :class:`~serving.rollouts.evidence.DriftEvidence`).

Admin commands go through ``call(method, *args)`` (``start``, ``pause``, ``resume``,
``promote``, ``abort``, ``list``, ``describe``: manager methods returning the JSON documents the
HTTP API sends back); the ingress calls ``routes()`` and ``report(records)``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from model_registry.settings import RegistryRef
from serving.canary.records import RolloutRecord
from serving.canary.routes import RolloutRoute
from serving.cluster.actors import TickingActor, ensure_actor, get_actor
from serving.cluster.versions import LocalVersionApps, VersionApps, binding
from serving.config import PlatformConfig
from serving.rollouts.checks import Check, register_check
from serving.rollouts.controller.store import RolloutStore
from serving.rollouts.evidence import DriftSource
from serving.rollouts.manager import RolloutManager

log = logging.getLogger("canaryserve.controller")
CONTROLLER_NAME = "canaryserve-rollouts"
ROLLOUTS_DB = "rollouts.db"  # under the data dir


def pinned_versions(config: PlatformConfig) -> set[tuple[str, int]]:
    """Versions the config names by number: they are served whatever a rollout decides."""
    return {(m, int(v)) for m, spec in config.models.items() for v in spec.versions if v.isdigit()}


class VersionDeployer:
    """The manager's :class:`~serving.rollouts.manager.Deployer` on model version apps.

    ``ensure`` must return at once (it runs under the controller's lock, and a deployment takes
    as long as its replicas need to load), so each version deploys in a thread of its own.
    """

    def __init__(
        self, config: PlatformConfig, registry: RegistryRef, apps: VersionApps | None = None
    ) -> None:
        self._config = config
        self._registry = registry
        self._apps = apps if apps is not None else LocalVersionApps(config)
        self._pinned = pinned_versions(config)
        self._starting: dict[tuple[str, int], threading.Thread] = {}

    def ensure(self, model: str, version: int) -> None:
        key = (model, version)
        if self.ready(model, version):
            return
        thread = self._starting.get(key)
        if thread is not None and thread.is_alive():
            return

        def run() -> None:
            t0 = time.monotonic()
            log.warning("deploying %s v%s", model, version)
            try:
                self._apps.deploy(binding(self._config, self._registry, model, version))
                log.warning("deployed %s v%s in %.1fs", model, version, time.monotonic() - t0)
            except Exception:
                log.exception("deploying %s v%s failed", model, version)

        thread = threading.Thread(target=run, name=f"deploy-{model}-v{version}", daemon=True)
        self._starting[key] = thread
        thread.start()

    def ready(self, model: str, version: int) -> bool:
        return version in self._apps.running().get(model, [])

    def retire(self, model: str, version: int) -> None:
        if (model, version) in self._pinned:
            return
        log.warning("retiring %s v%s", model, version)
        self._apps.retire(model, version)


class RolloutController(TickingActor):
    """Ray actor: the manager plus its loop. Ray restarts it if it dies; state is in SQLite."""

    def __init__(
        self,
        config: PlatformConfig,
        registry: RegistryRef,
        checks: Sequence[Check] = (),
        drift: DriftSource | None = None,
    ) -> None:
        from model_registry.evaluation.labelled_actions import labelled_accuracy
        from model_registry.mlflow_store import MlflowModelStore  # mlflow: only where it runs

        # First of all: the manager loads the active rollouts from the store, and loading
        # re-validates their specs, which refuses a check nobody registered.
        for check in checks:
            register_check(check)
        super().__init__(config.canary.controller_tick_s)
        self.manager = RolloutManager(
            RolloutStore(registry.data_path / ROLLOUTS_DB),
            MlflowModelStore(tracking_uri=registry.tracking_uri),
            VersionDeployer(config, registry),
            drain_delay_s=config.canary.drain_delay_s,
            drift=drift,
            offline=labelled_accuracy,
            pipelines=config.pipelines,
        )
        self.target = self.manager  # admin commands (``call``) are manager methods

    def round(self) -> None:
        # Instead of TickingActor's locked tick(): the drift monitor may take a while, so it
        # is asked outside the lock, and admin reads and the ingress's route polls never wait
        # on it.
        asks = self._locked(self.manager.drift_asks)
        fetched = self.manager.fetch_drift(asks)  # unlocked
        self._locked(self.manager.tick, fetched)

    async def routes(self) -> dict[str, RolloutRoute]:
        self._ensure_loop()
        result: dict[str, RolloutRoute] = await asyncio.to_thread(self._locked, self.manager.routes)
        return result

    async def report(self, records: list[RolloutRecord]) -> int:
        self._ensure_loop()
        taken: int = await asyncio.to_thread(self._locked, self.manager.report, records)
        return taken


def ensure_controller(
    config: PlatformConfig,
    registry: RegistryRef,
    *,
    checks: Sequence[Check] = (),
    drift: DriftSource | None = None,
) -> Any:
    """Get or create the controller actor and start its loop.

    ``checks`` are the plug-in checks (the built-ins are always there) and ``drift`` is where
    the ``prediction_drift`` evidence comes from; both are pickled to the actor's process. An
    actor that already runs keeps what it was created with.
    """
    return ensure_actor(
        RolloutController,
        CONTROLLER_NAME,
        config,
        registry,
        tuple(checks),
        drift,
        max_concurrency=64,
    )


def get_controller() -> Any | None:
    """The controller actor's handle, or None when there is none (yet)."""
    return get_actor(CONTROLLER_NAME)
