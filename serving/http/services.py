"""What the HTTP routes are handed: the data plane, the gate, and the links to the actors.

Built once per ingress replica (``serving.http.ingress``) or by a test with fakes for the Ray
parts; the routes close over it, so no route reads global or per-request side state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from model_registry.settings import RegistryRef
from model_registry.store import ModelStore
from serving.config import PlatformConfig
from serving.http.gate import Gate
from serving.inference import DataPlane, HandleSource


class ActorCalls(Protocol):
    async def call(self, method: str, *args: Any, **kw: Any) -> Any:
        """A method of the singleton actor's target (ServiceUnavailable if it is down)."""
        ...

    async def direct(self, method: str, *args: Any, **kw: Any) -> Any:
        """A method of the actor itself, e.g. the monitor's ``baseline``."""
        ...


@dataclass(frozen=True)
class Services:
    config: PlatformConfig
    registry: RegistryRef
    plane: DataPlane
    gate: Gate
    handles: HandleSource
    controller: ActorCalls  # the rollout controller's admin commands
    monitor: ActorCalls  # the drift monitor's reports and views
    store: Callable[[], ModelStore]  # the registry client (MLflow), shared; called in a thread
