"""Rollout checks: what a canary analysis measures, and the interface to plug more in.

A check turns one analysis window of :class:`WindowStats` into a :class:`CheckResult`:

- ``passed=True`` / ``False``: a verdict;
- ``passed=None``: *no verdict* (not enough data for this check, or it does not apply, e.g.
  ``latency_p99_ratio`` at weight 100 where the champion gets no traffic). The rollout neither
  waits on nor fails for an abstaining check; the state machine has its own per-arm sample guard
  (``min_requests``) before anything advances.
- a *sequential* check (``method: sequential``) judges the rollout's evidence so far
  (``WindowStats.prior``) plus this window, and its result carries the new ``evidence``; its
  ``passed=None`` means "not decisive yet", which keeps the rollout on its step.

The built-in checks (``circuit_breaker``, ``error_rate``, ``latency_p99_ratio``,
``latency_quantile``, ``shadow_agreement``) are registered here. A plug-in
(``drift.check.PredictionDriftCheck``) is a class with the four members of :class:`Check`,
registered *explicitly*, never as a side effect of importing its module: app assembly hands it
to the controller actor, which calls :func:`register_check` before it parses or loads any spec
(stored specs are re-validated, and a spec naming an unregistered check is refused). Data a
plug-in needs that the built-in arms do not carry goes in ``WindowStats.extra`` under the
check's name, as a typed value (e.g. ``extra["prediction_drift"] = DriftEvidence(...)``, see
``serving.rollouts.evidence``).

Which stats the caller fills, per phase:

- ``shadow`` phase: ``champion`` = live traffic, ``challenger`` = the mirrored (shadow) calls,
  ``shadow`` = the comparisons of the two answers (``record(None)`` for a failed shadow call);
- ``canary`` phase: ``champion`` / ``challenger`` = the live traffic each arm served; ``shadow``
  only if the router keeps mirroring (then ``shadow_agreement`` keeps judging it).
"""

from __future__ import annotations

import math
from typing import Literal, Protocol

from pydantic import ConfigDict, Field, field_validator, model_validator

from serving.errors import InvalidRolloutSpec
from serving.rollouts import sequential as seq
from serving.rollouts.latency import LatencyP99RatioCheck, LatencyQuantileCheck
from serving.rollouts.sequential import Evidence
from serving.rollouts.window import (
    RESERVOIR_SIZE,
    ArmStats,
    CheckResult,
    ShadowStats,
    WindowStats,
)
from serving.schema import Strict

__all__ = [
    "CHECKS",
    "PHASES",
    "RESERVOIR_SIZE",
    "ArmStats",
    "Check",
    "CheckResult",
    "CheckSpec",
    "ShadowStats",
    "WindowStats",
    "get_check",
    "register_check",
]

PHASES = frozenset({"shadow", "canary"})
SEQUENTIAL, WINDOW = "sequential", "window"


class Check(Protocol):
    """One named check. Instances are stateless: all they know comes in through evaluate.

    Optional members: ``methods`` (default ``{"window"}``) and ``default_method``, for a check
    that can also judge sequentially (then ``spec.sequential`` says which to use).
    """

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


def _judged(
    name: str, ev: Evidence, value: float | None, threshold: float, detail: str
) -> CheckResult:
    """A sequential check's result: pass / fail once decisive, no verdict (None) before."""
    passed = {seq.PASS: True, seq.FAIL: False}.get(ev.decision or "")
    return CheckResult(name, passed, value, threshold, detail, evidence=ev)


def _fraction(spec: CheckSpec) -> None:
    if not 0.0 <= spec.threshold <= 1.0:
        raise ValueError(f"{spec.name} threshold is a fraction in [0, 1], got {spec.threshold!r}")


class ErrorRateCheck:
    """Is the challenger failing more often? Shadow calls count in the shadow phase.

    ``sequential`` (default): an SPRT over the whole rollout, H0 "as often as the champion" vs
    H1 "``ratio`` times as often, or at ``threshold`` if higher"; value = its log likelihood
    ratio, threshold = its fail boundary (``sequential.error_rate_sprt``). ``window``: this
    window's challenger errors / requests <= ``threshold``.
    """

    name = "error_rate"
    phases = PHASES
    methods = frozenset({SEQUENTIAL, WINDOW})
    default_method = SEQUENTIAL

    def validate(self, spec: CheckSpec) -> None:
        _fraction(spec)

    def evaluate(self, stats: WindowStats, spec: CheckSpec, min_requests: int) -> CheckResult:
        arm, need = stats.challenger, _floor(spec, min_requests)
        if spec.sequential:
            champ = stats.champion
            ev = seq.error_rate_sprt(
                stats.prior.get(self.name),
                self.name,
                champion=(champ.requests, champ.errors),
                challenger=(arm.requests, arm.errors),
                ratio=spec.ratio,
                threshold=spec.threshold,
                alpha=spec.alpha,
                beta=spec.beta,
                floor=need,
            )
            detail = (
                f"challenger {ev.challenger_errors}/{ev.challenger_requests}, champion "
                f"{ev.champion_errors}/{ev.champion_requests} errors; log LR to fail "
                f"{ev.statistic:.3f} (>= {ev.fail_boundary:.3f}), to pass "
                f"{ev.pass_statistic:.3f} (<= {ev.pass_boundary:.3f}); need {need} per arm"
            )
            return _judged(self.name, ev, ev.statistic, ev.fail_boundary, detail)
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


class ShadowAgreementCheck:
    """Mean agreement of mirrored answers >= threshold.

    Judges the shadow phase (the phase's reason to exist) and the canary phase too whenever
    the router still mirrors traffic there; with no comparisons in a window it abstains.
    """

    name = "shadow_agreement"
    phases = PHASES
    methods = frozenset({SEQUENTIAL, WINDOW})
    default_method = SEQUENTIAL

    def validate(self, spec: CheckSpec) -> None:
        _fraction(spec)

    def evaluate(self, stats: WindowStats, spec: CheckSpec, min_requests: int) -> CheckResult:
        shadow, need = stats.shadow, _floor(spec, min_requests)
        agreement = shadow.agreement
        detail = f"{shadow.compared} compared, {shadow.failures} failed shadow calls"
        prior = stats.prior.get(self.name)
        if spec.sequential and (prior is not None or shadow.compared):
            ev = seq.agreement_cs(
                prior,
                self.name,
                compared=shadow.compared,
                agreement_sum=shadow.agreement_sum,
                threshold=spec.threshold,
                alpha=spec.alpha,
                beta=spec.beta,
                floor=need,
            )
            detail = (
                f"{detail}; mean {ev.statistic:.4f} of {ev.compared}, fail < "
                f"{ev.fail_boundary:.4f}, pass >= {ev.pass_boundary:.4f}; need {need}"
            )
            return _judged(self.name, ev, ev.statistic, spec.threshold, detail)
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
    method: Literal["sequential", "window"] | None = Field(
        default=None,
        description="sequential: the evidence of every window of the rollout adds up and the "
        "check decides once it is decisive, wrong at most alpha / beta of the time (the "
        "default where a check has it: error_rate, shadow_agreement); window: each window is "
        "judged alone against the threshold.",
    )
    alpha: float = Field(
        default=seq.DEFAULT_ALPHA,
        gt=0,
        lt=0.5,
        description="Chance of failing a good challenger (sequential; latency_quantile's level).",
    )
    beta: float = Field(
        default=seq.DEFAULT_BETA, gt=0, lt=0.5, description="Chance of passing a bad one."
    )
    ratio: float = Field(
        default=seq.DEFAULT_RATIO,
        gt=1,
        description="Sequential error_rate: the multiple of the champion's error rate it must "
        "catch (its H1).",
    )

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
        check = get_check(self.name)
        methods = getattr(check, "methods", frozenset({WINDOW}))
        if self.method is not None and self.method not in methods:
            raise ValueError(f"{self.name} has no method {self.method!r}; it has {sorted(methods)}")
        check.validate(self)
        return self

    @property
    def sequential(self) -> bool:
        """Whether this check accumulates evidence over the rollout (see ``method``)."""
        default = getattr(get_check(self.name), "default_method", WINDOW)
        return (self.method or default) == SEQUENTIAL


CIRCUIT_BREAKER = CircuitBreakerCheck.name

for _builtin in (
    CircuitBreakerCheck(),
    ErrorRateCheck(),
    LatencyP99RatioCheck(),
    LatencyQuantileCheck(),
    ShadowAgreementCheck(),
):
    register_check(_builtin)
