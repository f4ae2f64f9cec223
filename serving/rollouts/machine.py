"""The canary state machine: pure functions of (rollout, measured stats, clock) -> what to do.

No Ray, no HTTP, no registry calls, no clock reads: ``now`` is passed in (wall-clock seconds,
``time.time()``, because rollouts are persisted and read back by other processes). Functions
never mutate their argument; they return a new :class:`Rollout`, the :class:`Event` s to
record, and an :class:`Action` for the controller to carry out.

States::

    pending --activate--> shadow (mode shadow-then-canary) --> progressing (step 0..n-1)
    progressing --last step passes--> promoted
    shadow | progressing --failed checks >= threshold, or no data by the deadline--> rolled_back
    shadow | progressing <--pause / resume--> paused
    pending | shadow | progressing | paused --abort--> aborted

The analysis (:func:`tick`), Flagger style, once per window of ``spec.interval_s``:

1. Nothing happens while pending, paused or ended, nor before the window is ``interval_s`` old
   (except a sequential check's decisive fail: it rolls back at any tick).
2. Every enabled check that applies to the phase is evaluated (``circuit_breaker`` always).
   Each check enforces its own sample floor and abstains (``passed=None``) below it.
   Sequential checks judge ``Rollout.evidence`` plus the window (``serving.rollouts.ledger``).
3. A sequential check's decisive fail: rollback, whatever ``spec.threshold``. Any other failed
   check: ``failed_checks += 1`` (over the whole rollout), a ``check_failed`` event
   with every measured value, then rollback if ``failed_checks >= spec.threshold``, else a new
   window on the same step. A check with enough data of its own fails the window even when
   the other arm is still short of samples: waiting could only hide a bad challenger.
4. No failure, but a check whose data for this window is still being measured (``pending``:
   the drift monitor at the lowest priority on a loaded box): the window stays open until it is
   in, up to ``progress_deadline_s`` (then the window closes without it). Or no failure, but an
   arm short of ``min_requests`` (shadow phase: ``shadow.compared``; canary:
   the challenger, and the champion while it still gets traffic, i.e. weight < 100): no verdict,
   the window stays open; past ``progress_deadline_s`` the rollout rolls back with reason
   ``insufficient_data``.
5. A sequential check not decisive yet (below weight 100): the window is counted into the
   evidence and a new one opens on the same step (an ``undecided`` event).
6. All passed: the next step (shadow: after ``shadow_steps`` passing windows, step 0), or
   promotion once the last step (weight 100) passes.

Contract with the caller (the controller): call :func:`activate` once the challenger's
replicas serve, and act on the returned Action (``set_weight 0`` in state ``shadow``: start
mirroring ``spec.shadow_share``). The stats given to :func:`tick` cover exactly the time since
:func:`window_started_at`; when that changes (new step, new window after a failed check,
resume), start counting afresh. After a controller restart the open window's stats are lost:
:func:`restart_window` keeps the deadline from being charged for the downtime; the evidence
of closed windows is in the rollout, so none is lost or counted twice. When nothing happened,
the very same Rollout object comes back (``new is old``): nothing to save.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from serving.errors import InvalidRolloutSpec, InvalidRolloutTransition
from serving.rollouts import ledger
from serving.rollouts.checks import CIRCUIT_BREAKER, CheckResult, WindowStats, get_check
from serving.rollouts.spec import CheckSpec, RolloutSpec

PENDING = "pending"
SHADOW = "shadow"
PROGRESSING = "progressing"
PAUSED = "paused"
PROMOTED = "promoted"
ROLLED_BACK = "rolled_back"
ABORTED = "aborted"

RUNNING_STATES = frozenset({SHADOW, PROGRESSING})  # the analysis runs
ACTIVE_STATES = frozenset({PENDING, SHADOW, PROGRESSING, PAUSED})  # holds the model
ENDED_STATES = frozenset({PROMOTED, ROLLED_BACK, ABORTED})

INSUFFICIENT_DATA = "insufficient_data"
CHECKS_PASSED = "checks_passed"
MANUAL_PROMOTION = "manual_promotion"
ABORTED_REASON = "aborted"


@dataclass
class Rollout:
    id: str
    spec: RolloutSpec
    state: str
    champion_version: int
    created_at: float
    updated_at: float
    phase_started_at: float  # start of the current analysis window
    step_index: int = -1  # index into spec.weights(); -1 before canary traffic
    weight: float = 0.0  # challenger share of live traffic, percent
    failed_checks: int = 0
    passed_intervals: int = 0  # passing analysis windows, shadow ones included
    paused_state: str | None = None
    ended_reason: str | None = None
    last_results: list[dict[str, Any]] = field(default_factory=list)
    # Sequential checks' evidence over the whole rollout, by check name (see rollouts.ledger);
    # a rollout stored before it existed reads back with none.
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return self.spec.model

    @property
    def challenger_version(self) -> int:
        return self.spec.challenger_version

    def to_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["spec"] = self.spec.model_dump(mode="json")
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Rollout:
        fields = dict(doc)
        fields["spec"] = RolloutSpec.model_validate(fields["spec"])
        return cls(**fields)


@dataclass(frozen=True)
class Event:
    rollout_id: str
    ts: float
    kind: str  # started, shadow, step, interval_passed, check_failed, insufficient_data,
    # paused, resumed, promoted, rolled_back, aborted
    from_state: str | None
    to_state: str
    weight: float
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Event:
        return cls(**doc)


@dataclass(frozen=True)
class Action:
    """What the controller must do now. ``reason`` is a stable code (check name, 'aborted')."""

    kind: Literal["none", "set_weight", "promote", "rollback"]
    weight: float = 0.0
    reason: str = ""
    failed_check: CheckResult | None = None


NO_ACTION = Action("none")


# --- helpers -------------------------------------------------------------------------------


def _evolve(r: Rollout, now: float, **changes: Any) -> Rollout:
    return dataclasses.replace(r, updated_at=now, **changes)


def _event(r: Rollout, now: float, kind: str, before: str | None, **detail: Any) -> Event:
    return Event(r.id, now, kind, before, r.state, r.weight, detail)


def _phase(r: Rollout) -> str:
    return "shadow" if r.state == SHADOW else "canary"


def _refuse(r: Rollout, action: str, allowed: frozenset[str]) -> InvalidRolloutTransition:
    return InvalidRolloutTransition(
        f"cannot {action} rollout {r.id!r}: it is {r.state!r} "
        f"(possible from {', '.join(sorted(allowed))})",
        rollout_id=r.id,
        state=r.state,
    )


def evaluate_checks(
    spec: RolloutSpec, phase: str, stats: WindowStats, weight: float
) -> list[CheckResult]:
    """Results of the circuit breaker and every enabled check that applies to ``phase``.

    A check that raises counts as failed: a rollout must not advance on a check that could
    not look at the challenger. At ``weight`` 100 a ``compares_with_champion`` check abstains:
    the champion then serves only the last reconcile interval's trickle, nothing to judge by.
    """
    # The breaker always judges, listed or not (it has no threshold and cannot be disabled).
    specs = [CheckSpec(name=CIRCUIT_BREAKER, threshold=0.0)]
    specs += [c for c in spec.checks if c.name != CIRCUIT_BREAKER and c.enabled]
    results = []
    for cspec in specs:
        check = get_check(cspec.name)
        if phase not in check.phases:
            continue
        if weight >= 100 and getattr(check, "compares_with_champion", False):
            detail = "the champion serves no traffic at weight 100"
            results.append(CheckResult(cspec.name, None, None, cspec.threshold, detail))
            continue
        try:
            results.append(check.evaluate(stats, cspec, spec.min_requests))
        except Exception as e:
            results.append(
                CheckResult(cspec.name, False, None, cspec.threshold, f"check raised {e!r}"[:500])
            )
    return results


# --- lifecycle -----------------------------------------------------------------------------


def start(
    spec: RolloutSpec, champion_version: int, rollout_id: str, now: float
) -> tuple[Rollout, list[Event]]:
    """A new rollout in state ``pending``: the controller now deploys the challenger."""
    if champion_version == spec.challenger_version:
        raise InvalidRolloutSpec(
            f"challenger_version {spec.challenger_version} is already the champion of "
            f"{spec.model!r}",
            model=spec.model,
            version=champion_version,
        )
    # Created, updated and the first window's start: all now.
    r = Rollout(rollout_id, spec, PENDING, champion_version, now, now, now)
    ev = _event(
        r,
        now,
        "started",
        None,
        model=spec.model,
        champion_version=champion_version,
        challenger_version=spec.challenger_version,
        mode=spec.mode,
        weights=spec.weights(),
    )
    return r, [ev]


def activate(r: Rollout, now: float) -> tuple[Rollout, list[Event], Action]:
    """pending -> shadow (weight 0) or progressing at step 0, once the challenger serves."""
    if r.state != PENDING:
        raise _refuse(r, "activate", frozenset({PENDING}))
    if r.spec.mode == "shadow-then-canary":
        new = _evolve(r, now, state=SHADOW, phase_started_at=now, weight=0.0)
        ev = _event(new, now, "shadow", r.state, shadow_share=r.spec.shadow_share)
        return new, [ev], Action("set_weight", 0.0, "shadow")
    return _to_step(r, now, 0, {})


def _to_step(
    r: Rollout, now: float, index: int, measured: dict[str, Any]
) -> tuple[Rollout, list[Event], Action]:
    weight = r.spec.weights()[index]
    new = _evolve(r, now, state=PROGRESSING, step_index=index, weight=weight, phase_started_at=now)
    detail = {"step": index, "steps": len(r.spec.weights()), **measured}
    return new, [_event(new, now, "step", r.state, **detail)], Action("set_weight", weight, "step")


def tick(r: Rollout, stats: WindowStats, now: float) -> tuple[Rollout, list[Event], Action]:
    """One look at the current window; see the module docstring for the rules."""
    if r.state not in RUNNING_STATES:
        return r, [], NO_ACTION
    elapsed = now - r.phase_started_at
    stats = ledger.with_prior(stats, r.evidence)
    if elapsed >= r.spec.interval_s:
        stats = dataclasses.replace(stats, closing=True)
        results = evaluate_checks(r.spec, _phase(r), stats, r.weight)
    else:  # inside a window only a sequential check's decisive fail acts: it needs no more
        results = ledger.sequential_results(r.spec, _phase(r), stats, r.spec.min_requests)
        if not ledger.decisive_failures(results):
            return r, [], NO_ACTION
    measured: dict[str, Any] = {
        "results": [x.to_dict() for x in results],
        "samples": ledger.window_samples(stats, elapsed),
    }
    closed = dataclasses.replace(r, evidence=ledger.closed(r.evidence, results))
    if decisive := ledger.decisive_failures(results):  # no second chance: it has its error rates
        detail = {"failed": [x.name for x in decisive], "sequential": True, **measured}
        r = dataclasses.replace(closed, last_results=measured["results"])
        return _rollback(r, now, decisive[0].name, [("check_failed", detail)], decisive[0])
    failed = [x for x in results if x.passed is False]
    if failed:
        return _on_failure(closed, now, failed, measured)
    late = [x.name for x in results if x.pending]
    if late and elapsed <= r.spec.progress_deadline_s:
        return r, [], NO_ACTION  # a check's data is still being measured: keep the window open
    missing = ledger.missing_samples(stats, r.state == SHADOW, r.weight, r.spec.min_requests)
    if missing:
        if elapsed <= r.spec.progress_deadline_s:
            return r, [], NO_ACTION  # keep the window open until the data is in
        detail = {"missing": missing, "min_requests": r.spec.min_requests, **measured}
        r = dataclasses.replace(closed, last_results=measured["results"])
        return _rollback(r, now, INSUFFICIENT_DATA, [("insufficient_data", detail)], None)
    waiting = ledger.undecided(results, r.weight)
    if waiting:  # not decisive yet: count this window and open another on the same step
        new = _evolve(closed, now, phase_started_at=now, last_results=measured["results"])
        ev = _event(new, now, "undecided", r.state, undecided=waiting, **measured)
        return new, [ev], NO_ACTION
    return _on_pass(closed, now, measured)


def _on_failure(
    r: Rollout, now: float, failed: list[CheckResult], measured: dict[str, Any]
) -> tuple[Rollout, list[Event], Action]:
    count = r.failed_checks + 1
    detail = {
        "failed": [x.name for x in failed],
        "failed_checks": count,
        "threshold": r.spec.threshold,
        **measured,
    }
    if count >= r.spec.threshold:
        worst = failed[0]
        r = dataclasses.replace(r, failed_checks=count, last_results=measured["results"])
        return _rollback(r, now, worst.name, [("check_failed", detail)], worst)
    new = _evolve(
        r, now, failed_checks=count, phase_started_at=now, last_results=measured["results"]
    )
    return new, [_event(new, now, "check_failed", r.state, **detail)], NO_ACTION


def _rollback(
    r: Rollout,
    now: float,
    reason: str,
    before_events: list[tuple[str, dict[str, Any]]],
    failed: CheckResult | None,
) -> tuple[Rollout, list[Event], Action]:
    # The events that explain the rollback are stamped with the state they happened in.
    events = [_event(r, now, kind, r.state, **detail) for kind, detail in before_events]
    new = _evolve(r, now, state=ROLLED_BACK, weight=0.0, ended_reason=reason)
    detail: dict[str, Any] = {"reason": reason, "failed_checks": r.failed_checks}
    if failed is not None:
        detail["check"] = failed.to_dict()
    events.append(_event(new, now, "rolled_back", r.state, **detail))
    return new, events, Action("rollback", 0.0, reason, failed)


def _on_pass(
    r: Rollout, now: float, measured: dict[str, Any]
) -> tuple[Rollout, list[Event], Action]:
    r = dataclasses.replace(
        r, passed_intervals=r.passed_intervals + 1, last_results=measured["results"]
    )
    if r.state == SHADOW:
        if r.passed_intervals >= r.spec.shadow_steps:
            return _to_step(r, now, 0, measured)
        new = _evolve(r, now, phase_started_at=now)
        return new, [_event(new, now, "interval_passed", r.state, **measured)], NO_ACTION
    if r.step_index + 1 < len(r.spec.weights()):
        return _to_step(r, now, r.step_index + 1, measured)
    return _promote(r, now, CHECKS_PASSED, measured)


def _promote(
    r: Rollout, now: float, reason: str, detail: dict[str, Any]
) -> tuple[Rollout, list[Event], Action]:
    new = _evolve(r, now, state=PROMOTED, weight=100.0, paused_state=None, ended_reason=reason)
    ev = _event(new, now, "promoted", r.state, reason=reason, **detail)
    return new, [ev], Action("promote", 100.0, reason)


# --- manual operations ---------------------------------------------------------------------


def pause(r: Rollout, now: float) -> tuple[Rollout, list[Event]]:
    """Freeze the analysis; traffic stays at the current weight (so there is no Action)."""
    if r.state not in RUNNING_STATES:
        raise _refuse(r, "pause", RUNNING_STATES)
    new = _evolve(r, now, state=PAUSED, paused_state=r.state)
    return new, [_event(new, now, "paused", r.state)]


def resume(r: Rollout, now: float) -> tuple[Rollout, list[Event]]:
    """Back to the paused state, with a fresh analysis window (stats seen while paused are
    not judged)."""
    if r.state != PAUSED or r.paused_state not in RUNNING_STATES:
        raise _refuse(r, "resume", frozenset({PAUSED}))
    new = _evolve(r, now, state=r.paused_state, paused_state=None, phase_started_at=now)
    return new, [_event(new, now, "resumed", r.state)]


def promote_now(r: Rollout, now: float) -> tuple[Rollout, list[Event], Action]:
    """Skip the remaining analysis and make the challenger champion."""
    allowed = RUNNING_STATES | {PAUSED}
    if r.state not in allowed:
        raise _refuse(r, "promote", allowed)
    return _promote(r, now, MANUAL_PROMOTION, {"step": r.step_index, "from_weight": r.weight})


def abort(r: Rollout, now: float) -> tuple[Rollout, list[Event], Action]:
    """Give all traffic back to the champion and end the rollout."""
    if r.state not in ACTIVE_STATES:
        raise _refuse(r, "abort", ACTIVE_STATES)
    new = _evolve(r, now, state=ABORTED, weight=0.0, paused_state=None, ended_reason=ABORTED_REASON)
    ev = _event(new, now, "aborted", r.state, from_weight=r.weight)
    return new, [ev], Action("rollback", 0.0, ABORTED_REASON)


def restart_window(r: Rollout, now: float) -> Rollout:
    """Start the current window again (after a controller restart lost its stats)."""
    if r.state not in RUNNING_STATES:
        return r
    return _evolve(r, now, phase_started_at=now)


def window_started_at(r: Rollout) -> float:
    """Start of the window the stats passed to :func:`tick` must cover."""
    return r.phase_started_at


def is_active(r: Rollout) -> bool:
    """True while the rollout holds its model (one active rollout per model)."""
    return r.state in ACTIVE_STATES
