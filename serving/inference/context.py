"""What the data plane knows of one request, and what it hands back: typed, no side channel.

The HTTP layer builds a :class:`RequestContext` (id, route label, caller, routing key, pins)
and an :class:`InputSource` (how to read the body, once the route knows what it wants); the
data plane returns one :class:`Outcome`, an answer or an error, with what the audit trail and
the metrics need (the routing decision that answered, the input bytes, a summary).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from deployments.images import EncodedImage
from serving.canary.split import RoutingDecision
from serving.pipelines.ops import Clip


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    route: str  # metric/audit label: pipeline:<name>, model:<name>, or <kind>:unknown
    caller: str  # the API key's name, else the client address
    sticky_key: str | None  # routing key: X-Canary-Key, else the client address
    pin_header: str | None  # X-Model-Version as sent
    # May pin a rollout's challenger (the operator role; with auth off, a loopback client). Off
    # by default: a context that does not say so cannot probe a version under rollout.
    may_pin_challenger: bool = False
    started: float = field(default_factory=time.perf_counter)
    # Seconds per ingress stage (parse, capture, audit, serialise), filled as the request goes.
    stages: dict[str, float] = field(default_factory=dict)

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started


class InputSource(Protocol):
    """The request body, read and decoded only when asked (after the routing decision, so an
    unknown model or pin is refused before a large body is read)."""

    async def image(self) -> tuple[np.ndarray | EncodedImage, bytes]:
        """The image (checked, maybe still encoded: ``deployments.images``) and its bytes."""
        ...

    async def clip(self) -> tuple[Clip, bytes]:
        """The decoded clip and the bytes it came from."""
        ...


@dataclass(frozen=True)
class Outcome:
    """One request's result: ``body`` on success, else ``error`` (raised while serving)."""

    body: dict[str, Any] | None = None
    error: Exception | None = None
    decision: RoutingDecision | None = None
    input_bytes: bytes | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def versions(self) -> dict[str, int]:
        return self.decision.versions() if self.decision is not None else {}
