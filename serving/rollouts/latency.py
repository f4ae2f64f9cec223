"""The latency checks: the challenger's latency against the champion's, on live traffic.

Not in the shadow phase: mirrored calls run in the background under ``shadow_max_concurrency``,
so their latency is not comparable with live traffic. Both abstain at weight 100, where the
champion gets no traffic (``compares_with_champion``, see ``rollouts.machine``).
"""

from __future__ import annotations

from typing import Protocol

from serving.rollouts import sequential as seq
from serving.rollouts.window import CheckResult, WindowStats


class CheckSpec(Protocol):
    """What this check reads of ``checks.CheckSpec`` (the registry module imports this one,
    so the spec is described here rather than imported back)."""

    @property
    def threshold(self) -> float: ...
    @property
    def alpha(self) -> float: ...
    @property
    def min_samples(self) -> int | None: ...


class _LatencyCheck:
    """What both latency checks share: live traffic only, a positive ratio as threshold, and
    no verdict before each arm has its samples."""

    name = ""
    phases = frozenset({"canary"})
    compares_with_champion = True  # abstains at weight 100 (see rollouts.machine)

    def validate(self, spec: CheckSpec) -> None:
        if spec.threshold <= 0:
            raise ValueError(f"{self.name} threshold must be > 0, got {spec.threshold!r}")

    def _short(self, stats: WindowStats, spec: CheckSpec, min_requests: int) -> CheckResult | None:
        """No verdict (and why) while an arm has fewer than its floor of requests."""
        need = spec.min_samples if spec.min_samples is not None else min_requests
        champ, chall = stats.champion, stats.challenger
        if champ.requests < need or chall.requests < need:
            detail = f"champion {champ.requests}, challenger {chall.requests} of {need} requests"
            return CheckResult(self.name, None, None, spec.threshold, detail)
        return None


class LatencyP99RatioCheck(_LatencyCheck):
    """Challenger p99 / champion p99 <= threshold: one sample ratio per window (kept for
    explicit specs; ``latency_quantile`` judges the distribution)."""

    name = "latency_p99_ratio"

    def evaluate(self, stats: WindowStats, spec: CheckSpec, min_requests: int) -> CheckResult:
        short = self._short(stats, spec, min_requests)
        if short is not None:
            return short
        base, new = stats.champion.p99_ms, stats.challenger.p99_ms
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


class LatencyQuantileCheck(_LatencyCheck):
    """The challenger's latency distribution is at most ``threshold`` times the champion's.

    Per window, for each quantile of ``sequential.QUANTILES`` the samples can test: a sign
    test of the challenger's samples above ``threshold`` times an upper confidence bound on
    the champion's quantile (``sequential.quantile_test``), at ``alpha`` split over them. Fails
    when any quantile is rejected; value = the largest observed quantile ratio. Live traffic
    only, like ``latency_p99_ratio`` (still available).
    """

    name = "latency_quantile"

    def evaluate(self, stats: WindowStats, spec: CheckSpec, min_requests: int) -> CheckResult:
        short = self._short(stats, spec, min_requests)
        if short is not None:
            return short
        champ, chall = stats.champion, stats.challenger
        level = spec.alpha / len(seq.QUANTILES)
        found = (
            seq.quantile_test(champ.latencies_ms, chall.latencies_ms, q, spec.threshold, level)
            for q in seq.QUANTILES
        )
        tests = [t for t in found if t is not None]
        if not tests:
            detail = (
                f"too few latencies to test ({len(champ.latencies_ms)}, {len(chall.latencies_ms)})"
            )
            return CheckResult(self.name, None, None, spec.threshold, detail)
        detail = "; ".join(
            f"p{t.q * 100:g}: {t.exceed}/{t.samples} over {spec.threshold:g} x "
            f"{t.champion_bound_ms:.1f} ms (p={t.p_value:.2g})"
            for t in tests
        )
        worst = max(t.observed_ratio for t in tests)
        passed = not any(t.rejected for t in tests)
        return CheckResult(self.name, passed, worst, spec.threshold, detail)
