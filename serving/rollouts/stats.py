"""Per-rollout measurements reported by the ingress replicas, cut into analysis windows.

The ingress sends small batches of :class:`~serving.canary.records.RolloutRecord` (one per model
call on a rollout's model, one per shadow comparison, one per request the open breaker
diverted); the controller keeps them per rollout and builds the ``WindowStats`` of the current
analysis window (records since the window started), dropping older ones.

Only what the split chose arrives here (the ingress records no pinned request), and one routing
key counts at most ``max_per_key`` calls per arm and window: a client that sends many requests
under one ``X-Canary-Key`` (or, without one, from one address) weighs no more than K others.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from serving.canary.records import RolloutRecord
from serving.rollouts.checks import ArmStats, ShadowStats, WindowStats


@dataclass
class _Buffer:
    # ts, challenger arm?, ok, latency (None: the call had no measured latency), key digest
    calls: list[tuple[float, bool, bool, float | None, str | None]] = field(default_factory=list)
    shadows: list[tuple[float, float | None]] = field(default_factory=list)  # ts, agreement
    breaker_open_at: list[float] = field(default_factory=list)


_T = TypeVar("_T")


def _bound(items: list[_T], limit: int) -> None:
    # The oldest go first: a window only ever needs the newest records.
    if len(items) > limit:
        del items[: len(items) - limit]


class RolloutStats:
    """Records per rollout, at most ``max_records`` of each kind (the newest are kept)."""

    def __init__(self, max_records: int = 50_000) -> None:
        self._buffers: dict[str, _Buffer] = defaultdict(_Buffer)
        self._max = max_records

    def add(self, records: Iterable[RolloutRecord]) -> int:
        """Keep ``records``; returns how many were taken (a record without a rollout is not)."""
        taken = 0
        for rec in records:
            if not rec.rollout_id:
                continue
            buf = self._buffers[rec.rollout_id]
            if rec.kind == "call":
                buf.calls.append(
                    (rec.ts, rec.arm == "challenger", bool(rec.ok), rec.latency_ms, rec.key_hash)
                )
            elif rec.kind == "shadow":
                buf.shadows.append((rec.ts, rec.agreement))
            elif rec.kind == "breaker":
                buf.breaker_open_at.append(rec.ts)
            taken += 1
            _bound(buf.calls, self._max)
            _bound(buf.shadows, self._max)
            _bound(buf.breaker_open_at, self._max)
        return taken

    def window(self, rollout_id: str, since: float, max_per_key: int | None = None) -> WindowStats:
        """The stats of the window that started at ``since``; with ``max_per_key``, each
        routing key's calls count on each arm only up to that many (the first ones, in time
        order); key-less calls are not capped."""
        buf = self._buffers.get(rollout_id, _Buffer())
        # Forget what the window no longer needs (the controller only moves forward in time).
        buf.calls = [c for c in buf.calls if c[0] >= since]
        buf.shadows = [s for s in buf.shadows if s[0] >= since]
        buf.breaker_open_at = [t for t in buf.breaker_open_at if t >= since]
        champion, challenger, shadow = ArmStats(), ArmStats(), ShadowStats()
        per_key: Counter[tuple[bool, str]] = Counter()
        # In time order: replicas report out of order, and the cap keeps a key's first calls.
        for _ts, is_challenger, ok, ms, key in sorted(buf.calls, key=lambda c: c[0]):
            if key is not None and max_per_key is not None:
                per_key[(is_challenger, key)] += 1
                if per_key[(is_challenger, key)] > max_per_key:
                    continue
            (challenger if is_challenger else champion).record(ms, error=not ok)
        for _ts, agreement in buf.shadows:
            shadow.record(agreement)
        return WindowStats(
            champion=champion,
            challenger=challenger,
            shadow=shadow,
            circuit_open=bool(buf.breaker_open_at),
        )

    def forget(self, rollout_id: str) -> None:
        self._buffers.pop(rollout_id, None)
