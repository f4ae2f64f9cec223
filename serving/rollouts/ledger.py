"""The rollout's evidence ledger: what its sequential checks have counted so far, and each
window's sample counts.

``Rollout.evidence`` keeps one :class:`~serving.rollouts.sequential.Evidence` document per
sequential check (check name -> ``Evidence.model_dump()``), saved with the rollout in the same
write as its state. The state machine hands it to the checks as ``WindowStats.prior`` and, when
a window closes (a new step, a new window on the same step, the end), replaces it with what
the checks counted including that window. A window that stays open is not written: it is
judged again, whole, at the next tick. So a controller restart, which loses only the open
window (``restart_window``), neither resets the evidence nor counts a request twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from serving.rollouts.checks import CheckResult, WindowStats, get_check
from serving.rollouts.sequential import Evidence, folded
from serving.rollouts.spec import RolloutSpec

EvidenceDocs = dict[str, dict[str, Any]]


def with_prior(stats: WindowStats, docs: Mapping[str, dict[str, Any]]) -> WindowStats:
    """``stats`` (not changed) with the ledger's evidence as its ``prior``."""
    prior = {name: Evidence.model_validate(doc) for name, doc in docs.items()}
    return dataclasses.replace(stats, prior=prior)


def closed(docs: Mapping[str, dict[str, Any]], results: Iterable[CheckResult]) -> EvidenceDocs:
    """The ledger once the window the ``results`` judged is closed."""
    out = dict(docs)
    for res in results:
        if res.evidence is not None:
            out[res.name] = folded(res.evidence).model_dump()
    return out


def decisive_failures(results: Iterable[CheckResult]) -> list[CheckResult]:
    """Sequential checks whose evidence says fail: the rollout rolls back at once."""
    return [x for x in results if x.evidence is not None and x.passed is False]


def undecided(results: Iterable[CheckResult], weight: float) -> list[str]:
    """Sequential checks not decisive (or no longer passing): the rollout stays on its step.

    Except one that can never decide: at weight 100 the champion serves only a trickle, so a
    comparison still short of champion samples there would hold the rollout for ever (only a
    ``step_weights: [100]`` rollout gets there without earlier steps).
    """
    out = []
    for res in results:
        ev = res.evidence
        if ev is None or res.passed is not None:
            continue
        if weight >= 100 and ev.test == "sprt" and ev.champion_requests < ev.floor:
            continue
        out.append(res.name)
    return out


def sequential_results(
    spec: RolloutSpec, phase: str, stats: WindowStats, min_requests: int
) -> list[CheckResult]:
    """Only the sequential checks' results: what a tick inside a window may act on."""
    out = []
    for cspec in spec.checks:
        check = get_check(cspec.name)
        if not (cspec.enabled and cspec.sequential and phase in check.phases):
            continue
        try:
            out.append(check.evaluate(stats, cspec, min_requests))
        except Exception:  # judged (as failed) at the window's end, with the other checks
            continue
    return out


def window_samples(stats: WindowStats, elapsed: float) -> dict[str, Any]:
    """This window's counts, as the events record them."""
    return {
        "window_s": elapsed,
        "champion_requests": stats.champion.requests,
        "champion_errors": stats.champion.errors,
        "challenger_requests": stats.challenger.requests,
        "challenger_errors": stats.challenger.errors,
        "shadow_compared": stats.shadow.compared,
        "shadow_failures": stats.shadow.failures,
        "circuit_open": stats.circuit_open,
    }


def missing_samples(stats: WindowStats, shadow: bool, weight: float, need: int) -> dict[str, int]:
    """Arms short of ``need`` (``min_requests``) in this window -> how many they have."""
    have: dict[str, int]
    if shadow:
        have = {"shadow_compared": stats.shadow.compared}
    else:
        have = {"challenger_requests": stats.challenger.requests}
        if weight < 100:
            have["champion_requests"] = stats.champion.requests
    return {arm: n for arm, n in have.items() if n < need}
