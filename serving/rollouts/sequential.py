"""Sequential statistics for the rollout checks: verdicts with known error rates.

A fixed-window check compares one window's rate to a threshold and says nothing of how often
it is wrong. The tests here accumulate evidence over the whole rollout (every window, every
step) and decide as soon as it is decisive, with error rates fixed in advance (the spec's
``alpha``, ``beta``; 0.02 each by default):

- **error_rate**: a Wald SPRT on the challenger's calls, anchored on the champion. H0: the
  challenger fails as often as the champion (``p0``); H1: it fails ``ratio`` times as often, or
  at the check's ``threshold`` if that is higher, and at least :data:`MIN_EXCESS` more. So a
  challenger is bad at ``threshold`` however clean the champion, and clean traffic on both arms
  still decides (after about ``log(49) / threshold`` clean challenger calls). ``p0`` is not
  known: it is estimated from all the champion's calls so far, read cautiously for each
  decision (:func:`error_hypotheses`). The statistic is ``e1 log(p1/p0) + (n1 - e1)
  log((1-p1)/(1-p0))`` over all the challenger's calls so far; it fails at or above
  ``log((1-beta)/alpha)`` and passes at or below ``log(beta/(1-alpha))``.
  The plug-in ``p0`` makes the error rates approximate rather than exact: the simulation tests
  (tests/unit/serving/rollouts/test_rollout_simulation.py) measure them. The test keeps
  watching after a pass: each step must find the evidence still past the pass boundary (a
  challenger that passed on a lucky streak is held, and caught, on the next step), and a
  climb to the fail boundary fails (a challenger that breaks under more load).
- **shadow_agreement**: an always-valid confidence sequence for the mean agreement (values in
  [0, 1], so 1/2-sub-Gaussian): the one-sided normal-mixture boundary of Howard et al. (2021,
  "Time-uniform, nonparametric, nonasymptotic confidence sequences", eq. 14). It fails when the
  upper bound (level ``alpha``) is below the threshold and passes when the lower bound (level
  ``beta``) is at or above it (a pass lasts while it is). It needs only the count and the sum,
  which is what a window has. Hoeffding-style, so conservative when agreements vary little.
- **prediction_drift** (``drift.check``): a Wald SPRT over analysis windows, each counted
  once at its close as drifted or not (:func:`windows_sprt`), H0 a window drifts at the drift
  reports' false-alarm rate, H1 at the rate of a challenger whose answers changed.
- **latency_quantile** (per window, not sequential): is the challenger's q-th latency quantile
  more than ``threshold`` times the champion's, for q in :data:`QUANTILES`? A distribution-free
  upper confidence bound on the champion's quantile (an order statistic), then a one-sided
  binomial (sign) test on the challenger's exceedances of ``threshold`` times that bound.

No test decides below its minimum samples. Each decision is an :class:`Evidence`: the
statistic, the per-arm counts and the two boundaries, which the rollout persists (so a
restarted controller neither resets nor double counts it) and every event records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_ALPHA = 0.02  # wrong rollback of a good challenger
DEFAULT_BETA = 0.02  # wrong pass of a bad one
DEFAULT_RATIO = 3.0  # the error-rate multiple of the champion's that error_rate must catch
MIN_EXCESS = 0.01  # ... and at least this much more, so near-zero rates still decide
# How cautiously error_rate reads the champion's rate: this many standard errors, scaled by
# sqrt(challenger calls / champion calls), since the champion's uncertainty matters as much as
# it is large next to the challenger's own (0.5 at a 10% step, 1.5 at 50%).
CHAMPION_Z = 1.5
QUANTILES = (0.5, 0.9, 0.99)  # latency_quantile: the quantiles compared, when there is data
# The normal-mixture boundary is tightest around this many samples (its rho is tuned to it).
CS_TUNED_FOR = 200

PASS: Literal["pass"] = "pass"
FAIL: Literal["fail"] = "fail"
Decision = Literal["pass", "fail"]


class Evidence(BaseModel):
    """One sequential check's cumulative evidence over a rollout, as persisted with it.

    ``statistic`` crosses ``fail_boundary`` -> fail; ``pass_statistic`` crosses
    ``pass_boundary`` -> pass. For the SPRT they are log likelihood ratios (fail high, pass
    low; two, one per view of the champion's rate, see :func:`error_hypotheses`); for the
    confidence sequence both are the mean agreement (pass high, fail low) and the boundaries
    move with the number of samples.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    check: str
    test: Literal["sprt", "confidence_sequence"]
    champion_requests: int = Field(default=0, ge=0)
    champion_errors: int = Field(default=0, ge=0)
    challenger_requests: int = Field(default=0, ge=0)
    challenger_errors: int = Field(default=0, ge=0)
    compared: int = Field(default=0, ge=0, description="Shadow comparisons (agreement).")
    agreement_sum: float = Field(default=0.0, ge=0)
    statistic: float = Field(default=0.0, description="Compared with fail_boundary.")
    pass_statistic: float = Field(default=0.0, description="Compared with pass_boundary.")
    pass_boundary: float = 0.0
    fail_boundary: float = 0.0
    decision: Decision | None = None
    floor: int = Field(default=0, ge=0, description="Samples per arm it needs to decide.")
    windows: int = Field(default=0, ge=0, description="Analysis windows folded in.")


def wald_bounds(alpha: float, beta: float) -> tuple[float, float]:
    """(pass at or below, fail at or above) for Wald's log likelihood ratio."""
    _level("alpha", alpha)
    _level("beta", beta)
    return math.log(beta / (1 - alpha)), math.log((1 - beta) / alpha)


def _level(name: str, value: float) -> None:
    if not 0 < value < 0.5:
        raise ValueError(f"{name} must be in (0, 0.5), got {value!r}")


def champion_rate(requests: int, errors: int, shift: float) -> float:
    """The champion's error rate (Jeffreys: no errors yet is not rate 0), moved ``shift``
    standard errors up (+) or down (-)."""
    events = errors + 0.5
    return min(max((events + shift * math.sqrt(events)) / (requests + 1), 1e-6), 0.5)


def error_hypotheses(
    champion_requests: int,
    champion_errors: int,
    ratio: float,
    threshold: float,
    side: Decision,
    challenger_requests: int,
) -> tuple[float, float]:
    """(p0, p1) for the ``side`` decision: H0 the challenger fails as often as the champion,
    H1 ``ratio`` times as often or at ``threshold``, whichever is higher, and at least
    :data:`MIN_EXCESS` more than H0.

    The champion's rate is an estimate, so each decision takes the view of it that makes that
    decision harder: a fail compares with a champion ``shift`` standard errors worse than
    measured (a champion's lucky streak must not fail an equal challenger), a pass with a bad
    rate that many standard errors below (nor pass a bad one); ``shift`` is
    :data:`CHAMPION_Z` times ``sqrt(challenger_requests / champion_requests)``.
    """
    if ratio <= 1:
        raise ValueError(f"ratio must be > 1, got {ratio!r}")
    shift = CHAMPION_Z * math.sqrt(challenger_requests / max(champion_requests, 1))
    point = champion_rate(champion_requests, champion_errors, 0.0)
    if side == FAIL:
        p0 = champion_rate(champion_requests, champion_errors, shift)
        bad = ratio * point
    else:
        p0 = point
        bad = ratio * champion_rate(champion_requests, champion_errors, -shift)
    return p0, min(max(bad, threshold, p0 + MIN_EXCESS), 0.999)


def error_llr(challenger_requests: int, challenger_errors: int, p0: float, p1: float) -> float:
    """Log likelihood ratio (H1 p1 over H0 p0) of ``challenger_errors`` in the requests."""
    if not 0 <= challenger_errors <= challenger_requests:
        raise ValueError(
            f"errors must be within 0..requests, got {challenger_errors!r} of "
            f"{challenger_requests!r}"
        )
    ok = challenger_requests - challenger_errors
    return challenger_errors * math.log(p1 / p0) + ok * math.log((1 - p1) / (1 - p0))


def error_rate_sprt(
    prior: Evidence | None,
    check: str,
    *,
    champion: tuple[int, int],
    challenger: tuple[int, int],
    ratio: float,
    threshold: float,
    alpha: float,
    beta: float,
    floor: int,
) -> Evidence:
    """``prior`` plus one window of (requests, errors) per arm, judged.

    The log likelihood ratio is that of all the challenger's calls so far under the hypotheses
    the champion's calls so far give: a function of the four counts alone, so the evidence is
    exactly what was counted, whatever the windows were. No decision before both arms have
    ``floor`` requests in all; a pass lasts while the pass statistic stays at or below its
    boundary; a fail is final.
    """
    before = prior if prior is not None else Evidence(check=check, test="sprt")
    n0 = before.champion_requests + champion[0]
    e0 = before.champion_errors + champion[1]
    n1 = before.challenger_requests + challenger[0]
    e1 = before.challenger_errors + challenger[1]
    to_fail = to_pass = 0.0
    if n0 > 0 and n1 > 0:
        to_fail = error_llr(n1, e1, *error_hypotheses(n0, e0, ratio, threshold, FAIL, n1))
        to_pass = error_llr(n1, e1, *error_hypotheses(n0, e0, ratio, threshold, PASS, n1))
    counts = {
        "champion_requests": n0,
        "champion_errors": e0,
        "challenger_requests": n1,
        "challenger_errors": e1,
    }
    ready = min(n0, n1) >= floor
    return _wald_step(before, counts, to_fail, to_pass, alpha, beta, ready=ready, floor=floor)


def _wald_step(
    before: Evidence,
    counts: dict[str, int],
    to_fail: float,
    to_pass: float,
    alpha: float,
    beta: float,
    *,
    ready: bool,
    floor: int,
) -> Evidence:
    """``before`` with the new ``counts`` and log likelihood ratios, and the decision Wald's
    boundaries give once ``ready`` (a fail is final; a pass lasts while it holds)."""
    lower, upper = wald_bounds(alpha, beta)
    decision = before.decision
    if decision != FAIL and ready:
        decision = FAIL if to_fail >= upper else PASS if to_pass <= lower else None
    return before.model_copy(
        update={
            **counts,
            "statistic": to_fail,
            "pass_statistic": to_pass,
            "pass_boundary": lower,
            "fail_boundary": upper,
            "decision": decision,
            "floor": floor,
        }
    )


def windows_sprt(
    prior: Evidence | None,
    check: str,
    *,
    judged: int,
    failed: int,
    p0: float,
    p1: float,
    alpha: float,
    beta: float,
) -> Evidence:
    """``prior`` plus ``judged`` windows of which ``failed`` showed the failure: a Wald SPRT
    on the share of failing windows, H0 ``p0`` (a window's false-alarm rate) vs H1 ``p1``.
    Counts are windows (``challenger_requests``/``challenger_errors`` of the evidence); a pass
    lasts while the statistic stays at or below its boundary; a fail is final."""
    before = prior if prior is not None else Evidence(check=check, test="sprt")
    n = before.challenger_requests + judged
    e = before.challenger_errors + failed
    llr = error_llr(n, e, p0, p1) if n else 0.0
    counts = {"challenger_requests": n, "challenger_errors": e}
    return _wald_step(before, counts, llr, llr, alpha, beta, ready=n >= 1, floor=1)


def mean_radius(n: int, level: float) -> float:
    """Half-width at ``n`` samples of a one-sided confidence sequence for the mean of values in
    [0, 1], valid at every ``n`` at once with probability ``1 - level`` (normal mixture)."""
    _level("level", level)
    if n <= 0:
        return math.inf
    rho = (CS_TUNED_FOR / 4) / (2 * math.log(1 / level) + math.log(1 + 2 * math.log(1 / level)))
    v = n / 4 + rho
    return math.sqrt(2 * v * math.log(math.sqrt(v / rho) / level)) / n


def agreement_cs(
    prior: Evidence | None,
    check: str,
    *,
    compared: int,
    agreement_sum: float,
    threshold: float,
    alpha: float,
    beta: float,
    floor: int,
) -> Evidence:
    """``prior`` plus one window of shadow comparisons, judged against ``threshold``."""
    before = prior if prior is not None else Evidence(check=check, test="confidence_sequence")
    n = before.compared + compared
    total = before.agreement_sum + agreement_sum
    mean = total / n if n else 0.0
    fail_at = threshold - mean_radius(n, alpha)  # the upper bound is below the threshold
    pass_at = threshold + mean_radius(n, beta)  # the lower bound is at or above it
    decision = before.decision
    if decision != FAIL and n >= floor:
        # Agreements lie in [0, 1], so the lower bound is never below 0: a threshold of 0 (an
        # agreement that is recorded, not a gate) passes once the floor is met.
        passed = mean >= pass_at or threshold <= 0
        decision = FAIL if mean < fail_at else PASS if passed else None
    return before.model_copy(
        update={
            "compared": n,
            "agreement_sum": total,
            "statistic": mean,
            "pass_statistic": mean,
            "pass_boundary": pass_at,
            "fail_boundary": fail_at,
            "decision": decision,
            "floor": floor,
        }
    )


def folded(evidence: Evidence) -> Evidence:
    """The evidence once its window is closed (counted into the rollout for good)."""
    return evidence.model_copy(update={"windows": evidence.windows + 1})


# --- latency quantiles ---------------------------------------------------------------------


def _binom_pmfs(n: int, p: float) -> list[float]:
    """P(X = i) for i in 0..n, X ~ Binomial(n, p), 0 < p < 1 (log space: no underflow)."""
    lp, lq, base = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    return [
        math.exp(base - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)
        for i in range(n + 1)
    ]


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0:
        return 1.0
    if p >= 1:
        return 0.0
    return min(1.0, sum(_binom_pmfs(n, p)[: k + 1]))


def upper_rank(m: int, q: float, level: float) -> int | None:
    """Smallest rank r (1-based) with P(X_(r) >= the q-quantile) >= 1 - level among ``m``
    samples, i.e. P(Bin(m, q) <= r - 1) >= 1 - level; None when even the maximum is not."""
    total = 0.0
    for r, pmf in enumerate(_binom_pmfs(m, q) if m else [], start=1):
        total += pmf
        if total >= 1 - level and r <= m:
            return r
    return None


@dataclass(frozen=True)
class QuantileTest:
    """One quantile's comparison; ``rejected`` means the challenger's is too slow."""

    q: float
    champion_bound_ms: float  # upper confidence bound on the champion's q-quantile
    exceed: int  # challenger samples above ratio * champion_bound_ms
    samples: int
    p_value: float
    observed_ratio: float  # challenger's empirical q-quantile / champion's
    rejected: bool


def _nearest_rank(ordered: Sequence[float], q: float) -> float:
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def quantile_test(
    champion_ms: Sequence[float],
    challenger_ms: Sequence[float],
    q: float,
    ratio: float,
    level: float,
) -> QuantileTest | None:
    """Test H0 "challenger's q-quantile <= ratio * champion's" at ``level``; None when either
    arm has too few samples for the test to ever reject (it then says nothing)."""
    champ = sorted(champion_ms)
    m, n = len(champ), len(challenger_ms)
    half = level / 2  # half for the champion's bound, half for the sign test
    rank = upper_rank(m, q, half)
    if rank is None or n == 0 or (1 - q) ** n >= half:
        return None
    bound, base = champ[rank - 1], _nearest_rank(champ, q)
    if base <= 0:
        return None  # a champion answering in 0 ms: no ratio to compare with
    exceed = sum(1 for x in challenger_ms if x > ratio * bound)
    p_value = 1.0 - binom_cdf(exceed - 1, n, 1 - q)  # P(Bin(n, 1-q) >= exceed)
    mine = _nearest_rank(sorted(challenger_ms), q)
    return QuantileTest(
        q=q,
        champion_bound_ms=bound,
        exceed=exceed,
        samples=n,
        p_value=p_value,
        observed_ratio=mine / base,
        rejected=p_value < half,
    )
