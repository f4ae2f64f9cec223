"""What an ingress replica reports to the rollout controller about a rollout's traffic.

One record per model call the split sent to a rollout's model (``call``), per shadow comparison
(``shadow``) and per request the open circuit breaker diverted (``breaker``). Pinned requests
(``X-Model-Version``, ``?version=``) are served and audited but never recorded here: a caller
who chooses the version is probing it, not sampling it, and must not steer the rollout. Records
travel in batches from every ingress replica to the controller actor, so they are a typed value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RecordKind = Literal["call", "shadow", "breaker"]


@dataclass(frozen=True)
class RolloutRecord:
    rollout_id: str
    model: str
    ts: float
    kind: RecordKind = "call"
    arm: Literal["champion", "challenger"] | None = None  # calls only
    ok: bool | None = None  # calls only
    latency_ms: float | None = None  # calls only
    agreement: float | None = None  # shadows only: None when the shadow call failed
    # Calls only: the routing key's digest (``split.key_hash``), so that the controller can count
    # one key at most ``max_requests_per_key`` times per window; None for key-less requests.
    key_hash: str | None = None
