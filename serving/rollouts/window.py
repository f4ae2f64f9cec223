"""What one analysis window measured, per arm: the input of every check, and its output.

``WindowStats`` holds the window's requests per arm (``ArmStats``), the shadow comparisons
(``ShadowStats``), whether the challenger's breaker is open, plug-in data (``extra``) and the
evidence sequential checks accumulated before this window (``prior``, filled by the state
machine from the rollout). A check makes a ``CheckResult`` of it. ``serving.rollouts.checks``
re-exports all of them.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from serving.rollouts.sequential import Evidence

# Latency samples kept per arm and window. A uniform reservoir of 2000 pins p99 within about
# half a percentile point, at a bounded cost however busy the arm.
RESERVOIR_SIZE = 2000


@dataclass
class ArmStats:
    """Requests one model version served in the current window."""

    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    # Latencies offered to the reservoir; ``len(latencies_ms)`` stops at RESERVOIR_SIZE.
    latency_samples: int = 0
    # Seeded, so that the same request sequence gives the same reservoir (tests, replays).
    _rng: random.Random = field(
        default_factory=lambda: random.Random(0), init=False, repr=False, compare=False
    )

    def record(self, latency_ms: float | None = None, *, error: bool = False) -> None:
        """Count one request; ``latency_ms`` joins the reservoir (Algorithm R) when given."""
        self.requests += 1
        if error:
            self.errors += 1
        if latency_ms is None:
            return
        self.latency_samples += 1
        if len(self.latencies_ms) < RESERVOIR_SIZE:
            self.latencies_ms.append(float(latency_ms))
            return
        slot = self._rng.randrange(self.latency_samples)
        if slot < RESERVOIR_SIZE:
            self.latencies_ms[slot] = float(latency_ms)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def p99_ms(self) -> float | None:
        """Nearest-rank 99th percentile of the sampled latencies (None without samples)."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[math.ceil(0.99 * len(ordered)) - 1]


@dataclass
class ShadowStats:
    """Comparisons of champion and challenger answers to the same (mirrored) request."""

    compared: int = 0
    agreement_sum: float = 0.0
    failures: int = 0

    def record(self, agreement: float | None) -> None:
        """One shadow call: its agreement in [0, 1], or None when the shadow call failed.

        A failed shadow call is a comparison that agrees with nothing (0). Shadow copies are
        never counted as challenger traffic, so their answers are all a shadow phase knows of
        the challenger: one that cannot answer must not look like one that was never asked."""
        self.compared += 1
        if agreement is None:
            self.failures += 1
            return
        self.agreement_sum += float(agreement)

    @property
    def agreement(self) -> float | None:
        return self.agreement_sum / self.compared if self.compared else None


@dataclass
class WindowStats:
    """Everything measured since ``rollout.window_started_at(r)``."""

    champion: ArmStats = field(default_factory=ArmStats)
    challenger: ArmStats = field(default_factory=ArmStats)
    shadow: ShadowStats = field(default_factory=ShadowStats)
    circuit_open: bool = False  # the challenger's circuit breaker is open now
    # Plug-in data, keyed by check name; each check narrows its own value's type.
    extra: dict[str, object] = field(default_factory=dict)
    # What each sequential check counted in the rollout's earlier windows (by check name);
    # the state machine fills it from the rollout, the caller never does.
    prior: dict[str, Evidence] = field(default_factory=dict)
    # Whether this look closes the window (the state machine sets it): a check that counts one
    # outcome per window (prediction_drift) counts it once, at the close, not at every look.
    closing: bool = False


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool | None  # None = no verdict (not enough data, or not applicable)
    value: float | None
    threshold: float
    detail: str = ""
    report_id: str | None = None  # the drift report behind the verdict, if any
    # A sequential check's cumulative evidence: statistic, per-arm counts, boundaries.
    evidence: Evidence | None = None
    # Its data for this window is still being measured: the window stays open for it (up to
    # the rollout's progress deadline) instead of closing without it.
    pending: bool = False

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["evidence"] = None if self.evidence is None else self.evidence.model_dump()
        return doc

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CheckResult:
        doc = {"report_id": None, "pending": False, **raw}
        evidence = doc.pop("evidence", None)
        parsed = None if evidence is None else Evidence.model_validate(evidence)
        return cls(**doc, evidence=parsed)
