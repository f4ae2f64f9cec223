"""Per-rollout measurements reported by the ingress replicas, cut into analysis windows.

The ingress sends small batches of records (one per model call on a rollout's model, one per
shadow comparison); the controller keeps them per rollout and builds the ``WindowStats`` of the
current analysis window (records since the window started), dropping older ones.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from serving.checks import ArmStats, ShadowStats, WindowStats


@dataclass
class _Buffer:
    calls: list[tuple[float, str, bool, float]] = field(default_factory=list)  # ts, arm, ok, ms
    shadows: list[tuple[float, float | None]] = field(default_factory=list)  # ts, agreement
    breaker_open_at: list[float] = field(default_factory=list)


class RolloutStats:
    def __init__(self, max_records: int = 50_000) -> None:
        self._buffers: dict[str, _Buffer] = defaultdict(_Buffer)
        self._max = max_records

    def add(self, records: list[dict[str, Any]]) -> int:
        """Records: {rollout_id, ts, kind: call|shadow|breaker, arm, ok, latency_ms, agreement}."""
        taken = 0
        for rec in records:
            rid = rec.get("rollout_id")
            if not rid:
                continue
            buf = self._buffers[rid]
            kind = rec.get("kind", "call")
            ts = float(rec.get("ts", 0.0))
            if kind == "call":
                buf.calls.append(
                    (ts, str(rec["arm"]), bool(rec["ok"]), float(rec.get("latency_ms", 0.0)))
                )
            elif kind == "shadow":
                agreement = rec.get("agreement")
                buf.shadows.append((ts, None if agreement is None else float(agreement)))
            elif kind == "breaker":
                buf.breaker_open_at.append(ts)
            taken += 1
            if len(buf.calls) > self._max:
                del buf.calls[: len(buf.calls) - self._max]
            if len(buf.shadows) > self._max:
                del buf.shadows[: len(buf.shadows) - self._max]
        return taken

    def window(self, rollout_id: str, since: float) -> WindowStats:
        buf = self._buffers.get(rollout_id, _Buffer())
        # Forget what the window no longer needs (the controller only moves forward in time).
        buf.calls = [c for c in buf.calls if c[0] >= since]
        buf.shadows = [s for s in buf.shadows if s[0] >= since]
        buf.breaker_open_at = [t for t in buf.breaker_open_at if t >= since]
        champion, challenger, shadow = ArmStats(), ArmStats(), ShadowStats()
        for _ts, arm, ok, ms in buf.calls:
            (challenger if arm == "challenger" else champion).record(ms, error=not ok)
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
