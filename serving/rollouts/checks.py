"""Rollout checks: what a canary analysis measures, and the interface to plug more in.

A check turns one analysis window of :class:`WindowStats` into a :class:`CheckResult`:

- ``passed=True`` / ``False``: a verdict;
- ``passed=None``: *no verdict* (not enough data for this check, or it does not apply, e.g.
  ``latency_p99_ratio`` at weight 100 where the champion gets no traffic). The rollout neither
  waits on nor fails for an abstaining check; the state machine has its own per-arm sample guard
  (``min_requests``) before anything advances.

The built-in checks (``circuit_breaker``, ``error_rate``, ``latency_p99_ratio``,
``shadow_agreement``) are registered here. A plug-in (``drift.check.PredictionDriftCheck``) is a
class with the four members of :class:`Check`, and is registered *explicitly*, never as a side
effect of importing its module: app assembly hands it to the controller actor, which calls
:func:`register_check` before it parses or loads any spec (stored specs are re-validated, and
a spec naming an unregistered check is refused). Data a plug-in needs that the built-in arms
do not carry goes in ``WindowStats.extra`` under the check's name, as a typed value (e.g.
``extra["prediction_drift"] = DriftEvidence(...)``, see ``serving.rollouts.evidence``).

Which stats the caller fills, per phase:

- ``shadow`` phase: ``champion`` = live traffic, ``challenger`` = the mirrored (shadow) calls,
  ``shadow`` = the comparisons of the two answers (``record(None)`` for a failed shadow call);
- ``canary`` phase: ``champion`` / ``challenger`` = the live traffic each arm served; ``shadow``
  only if the router keeps mirroring (then ``shadow_agreement`` keeps judging it).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from pydantic import ConfigDict, Field, field_validator, model_validator

from serving.errors import InvalidRolloutSpec
from serving.schema import Strict

PHASES = frozenset({"shadow", "canary"})

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
        """One shadow call: its agreement in [0, 1], or None when the shadow call failed."""
        if agreement is None:
            self.failures += 1
            return
        self.compared += 1
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


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool | None  # None = no verdict (not enough data, or not applicable)
    value: float | None
    threshold: float
    detail: str = ""
    report_id: str | None = None  # the drift report behind the verdict, if any

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CheckResult:
        return cls(**{"report_id": None, **raw})


class Check(Protocol):
    """One named check. Instances are stateless: all they know comes in through evaluate."""

    name: str
    phases: frozenset[str]  # subset of {"shadow", "canary"}: the rollout phases it judges

    def validate(self, spec: CheckSpec) -> None:
        """Raise ValueError (quoting the value) if ``spec`` makes no sense for this check."""
        ...

    def evaluate(self, stats: WindowStats, spec: CheckSpec, min_requests: int) -> CheckResult:
        """Judge one window. ``spec.min_samples`` (when set) overrides ``min_requests``."""
        ...


def _floor(spec: CheckSpec, min_requests: int) -> int:
    return spec.min_samples if spec.min_samples is not None else min_requests


def _fraction(spec: CheckSpec) -> None:
    if not 0.0 <= spec.threshold <= 1.0:
        raise ValueError(f"{spec.name} threshold is a fraction in [0, 1], got {spec.threshold!r}")


class ErrorRateCheck:
    """Challenger errors / requests <= threshold. Shadow calls count in the shadow phase."""

    name = "error_rate"
    phases = PHASES

    def validate(self, spec: CheckSpec) -> None:
        _fraction(spec)

    def evaluate(self, stats: WindowStats, spec: CheckSpec, min_requests: int) -> CheckResult:
        arm, need = stats.challenger, _floor(spec, min_requests)
        rate = arm.error_rate
        if arm.requests < need or rate is None:
            return CheckResult(
                self.name, None, rate, spec.threshold, f"{arm.requests} of {need} requests"
            )
        return CheckResult(
            self.name,
            rate <= spec.threshold,
            rate,
            spec.threshold,
            f"{arm.errors} errors in {arm.requests} requests",
        )


class LatencyP99RatioCheck:
    """Challenger p99 / champion p99 <= threshold, on live traffic only.

    Not in the shadow phase: mirrored calls run in the background under
    ``shadow_max_concurrency``, so their latency is not comparable with live traffic.
    """

    name = "latency_p99_ratio"
    phases = frozenset({"canary"})
    compares_with_champion = True  # abstains at weight 100 (see rollouts.machine)

    def validate(self, spec: CheckSpec) -> None:
        if spec.threshold <= 0:
            raise ValueError(f"{self.name} threshold must be > 0, got {spec.threshold!r}")

    def evaluate(self, stats: WindowStats, spec: CheckSpec, min_requests: int) -> CheckResult:
        need = _floor(spec, min_requests)
        champ, chall = stats.champion, stats.challenger
        if champ.requests < need or chall.requests < need:
            return CheckResult(
                self.name,
                None,
                None,
                spec.threshold,
                f"champion {champ.requests}, challenger {chall.requests} of {need} requests",
            )
        base, new = champ.p99_ms, chall.p99_ms
        if base is None or new is None or base <= 0:
            return CheckResult(
                self.name, None, None, spec.threshold, f"no usable p99 ({base!r}, {new!r} ms)"
            )
        ratio = new / base
        return CheckResult(
            self.name,
            ratio <= spec.threshold,
            ratio,
            spec.threshold,
            f"p99 challenger {new:.1f} ms / champion {base:.1f} ms",
        )


class ShadowAgreementCheck:
    """Mean agreement of mirrored answers >= threshold.

    Judges the shadow phase (the phase's reason to exist) and the canary phase too whenever
    the router still mirrors traffic there; with no comparisons in a window it abstains.
    """

    name = "shadow_agreement"
    phases = PHASES

    def validate(self, spec: CheckSpec) -> None:
        _fraction(spec)

    def evaluate(self, stats: WindowStats, spec: CheckSpec, min_requests: int) -> CheckResult:
        shadow, need = stats.shadow, _floor(spec, min_requests)
        agreement = shadow.agreement
        detail = f"{shadow.compared} compared, {shadow.failures} failed shadow calls"
        if shadow.compared < need or agreement is None:
            return CheckResult(self.name, None, agreement, spec.threshold, f"{detail}; need {need}")
        return CheckResult(
            self.name, agreement >= spec.threshold, agreement, spec.threshold, detail
        )


class CircuitBreakerCheck:
    """An open challenger circuit fails (value 1.0). Always on; its threshold is ignored.

    It needs no samples: an open circuit is exactly when the challenger stops getting any.
    """

    name = "circuit_breaker"
    phases = PHASES

    def validate(self, spec: CheckSpec) -> None:
        if not spec.enabled:
            raise ValueError("circuit_breaker is always on and cannot be disabled")

    def evaluate(self, stats: WindowStats, spec: CheckSpec, min_requests: int) -> CheckResult:
        is_open = stats.circuit_open
        return CheckResult(
            self.name,
            not is_open,
            1.0 if is_open else 0.0,
            0.0,
            "challenger circuit open" if is_open else "closed",
        )


CHECKS: dict[str, Check] = {}


def register_check(check: Check, *, replace: bool = False) -> Check:
    """Make ``check`` available to rollout specs by its name.

    A different check under a taken name is refused unless ``replace=True``, so a plug-in
    cannot silently swap out a built-in.
    """
    if not check.name or not check.phases or not check.phases <= PHASES:
        raise ValueError(
            f"check {check.name!r}: needs a name and phases within {sorted(PHASES)}, "
            f"got {sorted(check.phases)!r}"
        )
    current = CHECKS.get(check.name)
    if current is not None and current is not check and not replace:
        raise ValueError(f"a check named {check.name!r} is already registered: {current!r}")
    CHECKS[check.name] = check
    return check


def get_check(name: str) -> Check:
    try:
        return CHECKS[name]
    except KeyError:
        raise InvalidRolloutSpec(
            f"unknown check {name!r}; known checks: {sorted(CHECKS)}", check=name
        ) from None


class CheckSpec(Strict):
    """One check of a rollout spec's analysis, and its threshold (the check must be known)."""

    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(description="A registered check: error_rate, latency_p99_ratio, ...")
    threshold: float = Field(
        description="Upper bound (error_rate, latency_p99_ratio) or lower bound "
        "(shadow_agreement); ignored by circuit_breaker."
    )
    min_samples: int | None = Field(
        default=None, ge=1, description="Samples this check needs; default: min_requests."
    )
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        try:
            get_check(name)
        except InvalidRolloutSpec as e:
            raise ValueError(e.message) from None
        return name

    @model_validator(mode="after")
    def _threshold(self) -> CheckSpec:
        if not math.isfinite(self.threshold):
            raise ValueError(f"{self.name} threshold must be finite, got {self.threshold!r}")
        get_check(self.name).validate(self)
        return self


CIRCUIT_BREAKER = CircuitBreakerCheck.name

for _builtin in (
    CircuitBreakerCheck(),
    ErrorRateCheck(),
    LatencyP99RatioCheck(),
    ShadowAgreementCheck(),
):
    register_check(_builtin)
