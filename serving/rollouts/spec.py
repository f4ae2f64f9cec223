"""What a rollout of one challenger version looks like: steps, pacing, guards and checks.

Traffic steps, in order of precedence:

- ``step_weights``: the exact list of challenger weights (percent). Strictly increasing, each in
  (0, 100], and the last **must be 100**: an explicit list is taken literally, so a list that
  stops short is refused rather than silently extended.
- ``step_weight`` (+ optional ``max_weight``, default 100), Flagger style: ``step_weight``,
  ``2 * step_weight``, ... up to ``max_weight`` (the last clamped to it), then 100. Flagger
  promotes once ``max_weight`` passes; here promotion happens after a final analysed step at
  100, so the challenger's error rate is judged at full load before it becomes champion.
  ``step_weight=10, max_weight=50`` gives ``[10, 20, 30, 40, 50, 100]``.
- neither: ``[10, 25, 50, 100]``.

At weight 100 the champion gets no traffic, so checks relative to it (``latency_p99_ratio``,
``latency_quantile``) abstain there; they have judged every earlier step.

Checks: each has a ``method``. ``sequential`` (the default of ``error_rate`` and
``shadow_agreement``) adds every window's evidence up over the whole rollout, across steps,
and decides once it is decisive, wrong at most ``alpha`` / ``beta`` of the time (0.02 each by
default): a step advances only on a decisive pass, a decisive fail rolls back at once
(``serving.rollouts.sequential``). ``window`` judges each window alone against the threshold,
rolling back after ``threshold`` failed windows in all.

Durations (``interval``, ``progress_deadline``) accept ``30s``, ``2m``, ``1h``, ``500ms``,
``1m30s`` or a number of seconds, and are stored in seconds (``interval_s``,
``progress_deadline_s``; both names are accepted on input).
"""

from __future__ import annotations

import math
import re
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from serving.errors import InvalidRolloutSpec, validation_lines
from serving.rollouts.checks import CheckSpec
from serving.schema import Strict

DEFAULT_STEP_WEIGHTS = (10.0, 25.0, 50.0, 100.0)
MAX_STEPS = 100

_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | float) -> float:
    """``'30s'``, ``'2m'``, ``'1h'``, ``'500ms'``, ``'1m30s'``, ``'90'`` or ``90`` -> seconds."""
    if isinstance(text, bool):
        raise InvalidRolloutSpec(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        seconds = float(text)
    elif isinstance(text, str):
        raw = text.strip().lower()
        if _NUMBER.match(raw):
            seconds = float(raw)
        elif raw and "".join(m.group(0) for m in _PART.finditer(raw)) == raw:
            seconds = sum(float(n) * _UNIT_S[u] for n, u in _PART.findall(raw))
        else:
            raise InvalidRolloutSpec(
                f"not a duration: {text!r} (use e.g. '30s', '2m', '1h' or a number of seconds)"
            )
    else:
        raise InvalidRolloutSpec(f"not a duration: {text!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidRolloutSpec(f"duration must be a finite number >= 0, got {text!r}")
    return seconds


def _duration(value: Any) -> float:
    # pydantic reports ValueErrors with the field's location; a CanaryError would escape it.
    try:
        return parse_duration(value)
    except InvalidRolloutSpec as e:
        raise ValueError(e.message) from None


Duration = Annotated[float, BeforeValidator(_duration)]


class _Spec(Strict):
    model_config = ConfigDict(populate_by_name=True)  # merged with Strict's: frozen, no extras


def default_checks() -> list[CheckSpec]:
    """error_rate and shadow_agreement sequential (their default method), latency judged on
    its quantiles per window (``latency_p99_ratio`` stays available)."""
    return [
        CheckSpec(name="error_rate", threshold=0.05),
        CheckSpec(name="latency_quantile", threshold=2.0),
        CheckSpec(name="shadow_agreement", threshold=0.8),
    ]


class RolloutSpec(_Spec):
    model: str = Field(min_length=1, description="Registered model name.")
    challenger_version: int = Field(ge=1, description="Registry version under test.")
    mode: Literal["canary", "shadow-then-canary"] = "canary"
    step_weights: list[float] | None = Field(
        default=None, description="Challenger weights in percent; the last must be 100."
    )
    step_weight: float | None = Field(default=None, gt=0, le=100)
    max_weight: float | None = Field(default=None, gt=0, le=100)
    interval_s: Duration = Field(
        default=60.0, gt=0, alias="interval", description="Analysis window per step."
    )
    threshold: int = Field(
        default=2, ge=1, description="Failed check evaluations (in total) before rollback."
    )
    min_requests: int = Field(
        default=20, ge=1, description="Requests per arm and window before a step may pass."
    )
    progress_deadline_s: Duration = Field(
        default=600.0,
        gt=0,
        alias="progress_deadline",
        description="A window that has not got min_requests by then rolls back.",
    )
    shadow_share: float = Field(default=0.2, gt=0, le=1, description="Share of requests mirrored.")
    shadow_max_concurrency: int = Field(default=2, ge=1)
    shadow_steps: int = Field(default=1, ge=1, description="Passing shadow windows before canary.")
    max_requests_per_key: int = Field(
        default=20,
        ge=1,
        description=(
            "Calls one routing key (X-Canary-Key, else the client address) counts per arm and "
            "window: one client cannot outvote the others."
        ),
    )
    checks: list[CheckSpec] = Field(default_factory=default_checks)

    @field_validator("step_weights")
    @classmethod
    def _steps(cls, steps: list[float] | None) -> list[float] | None:
        if steps is None:
            return None
        if not steps:
            raise ValueError("step_weights is empty; give at least [100]")
        if len(steps) > MAX_STEPS:
            raise ValueError(f"{len(steps)} step_weights, at most {MAX_STEPS}")
        for w in steps:
            if not 0 < w <= 100:
                raise ValueError(f"step weight {w!r} is not in (0, 100]")
        for a, b in pairwise(steps):
            if b <= a:
                raise ValueError(f"step_weights must increase strictly: {a!r} then {b!r}")
        if steps[-1] != 100:
            raise ValueError(
                f"the last of step_weights must be 100 (full traffic before promotion), "
                f"got {steps[-1]!r}; add 100, or use step_weight/max_weight"
            )
        return steps

    @model_validator(mode="after")
    def _cross(self) -> RolloutSpec:
        if self.step_weights is not None and (
            self.step_weight is not None or self.max_weight is not None
        ):
            raise ValueError(
                f"give step_weights ({self.step_weights!r}) or step_weight/max_weight "
                f"({self.step_weight!r}/{self.max_weight!r}), not both"
            )
        if self.max_weight is not None and self.step_weight is None:
            raise ValueError(f"max_weight ({self.max_weight!r}) needs step_weight")
        if self.step_weight is not None:
            top = self.max_weight if self.max_weight is not None else 100.0
            if self.step_weight > top:
                raise ValueError(
                    f"step_weight ({self.step_weight!r}) is above max_weight ({top!r})"
                )
            if top / self.step_weight > MAX_STEPS:
                raise ValueError(
                    f"step_weight {self.step_weight!r} up to {top!r} makes more than "
                    f"{MAX_STEPS} steps"
                )
        if self.progress_deadline_s < self.interval_s:
            raise ValueError(
                f"progress_deadline ({self.progress_deadline_s!r}s) is shorter than interval "
                f"({self.interval_s!r}s): no window could ever complete"
            )
        seen: set[str] = set()
        for check in self.checks:
            if check.name in seen:
                raise ValueError(f"check {check.name!r} is listed twice")
            seen.add(check.name)
        return self

    def weights(self) -> list[float]:
        """The challenger weight of each canary step, ending with 100."""
        if self.step_weights is not None:
            return list(self.step_weights)
        if self.step_weight is None:
            return list(DEFAULT_STEP_WEIGHTS)
        top = self.max_weight if self.max_weight is not None else 100.0
        # Multiply instead of adding up, so 0.1-sized steps do not drift (0.30000000000000004).
        out: list[float] = []
        k = 1
        while (w := round(self.step_weight * k, 9)) < top:
            out.append(w)
            k += 1
        out.append(top)
        if top < 100:
            out.append(100.0)
        return out


def parse_rollout_spec(raw: dict[str, Any]) -> RolloutSpec:
    """Validate user input; every problem becomes one ``loc: message (got value)`` line."""
    if not isinstance(raw, dict):
        raise InvalidRolloutSpec(f"a rollout spec is a mapping, got {type(raw).__name__}")
    try:
        return RolloutSpec.model_validate(raw)
    except ValidationError as e:
        lines = validation_lines(e)
        raise InvalidRolloutSpec("invalid rollout spec:\n" + "\n".join(lines)) from None
