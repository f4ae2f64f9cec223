"""The checks' sequential methods, the latency quantile check and the per-check options."""

from __future__ import annotations

import numpy as np
import pytest

from serving.rollouts.checks import ArmStats, CheckResult, ShadowStats, WindowStats, get_check
from serving.rollouts.sequential import Evidence, error_rate_sprt
from serving.rollouts.spec import CheckSpec
from tests.unit.serving.rollouts.conftest import arm, evaluate


def test_the_method_defaults_per_check_and_is_refused_where_a_check_has_none() -> None:
    assert CheckSpec(name="error_rate", threshold=0.05).sequential
    assert CheckSpec(name="shadow_agreement", threshold=0.8).sequential
    assert not CheckSpec(name="error_rate", threshold=0.05, method="window").sequential
    assert not CheckSpec(name="latency_quantile", threshold=2.0).sequential
    assert CheckSpec(name="error_rate", threshold=0.05, method="sequential").sequential
    with pytest.raises(
        ValueError, match=r"latency_p99_ratio has no method 'sequential'; it has \['window'\]"
    ):
        CheckSpec(name="latency_p99_ratio", threshold=2.0, method="sequential")
    assert CheckSpec(name="latency_p99_ratio", threshold=2.0, method="window").method == "window"


@pytest.mark.parametrize("field", ["alpha", "beta"])
@pytest.mark.parametrize("bad", [0.0, 0.5])
def test_alpha_and_beta_are_refused_outside_zero_to_a_half(field: str, bad: float) -> None:
    with pytest.raises(ValueError, match=field):
        CheckSpec(name="error_rate", threshold=0.05, **{field: bad})  # type: ignore[arg-type]
    ok = CheckSpec(name="error_rate", threshold=0.05, **{field: 0.49})  # type: ignore[arg-type]
    assert getattr(ok, field) == 0.49


def test_a_ratio_of_one_is_refused() -> None:
    with pytest.raises(ValueError, match="ratio"):
        CheckSpec(name="error_rate", threshold=0.05, ratio=1.0)
    assert CheckSpec(name="error_rate", threshold=0.05, ratio=1.5).ratio == 1.5


def test_sequential_error_rate_judges_prior_plus_window_and_shows_its_evidence() -> None:
    prior = error_rate_sprt(
        None,
        "error_rate",
        champion=(900, 18),
        challenger=(100, 2),
        ratio=3.0,
        threshold=0.05,
        alpha=0.02,
        beta=0.02,
        floor=20,
    )
    stats = WindowStats(champion=arm(100, 2), challenger=arm(200, 2), prior={"error_rate": prior})
    res = evaluate("error_rate", stats, 0.05)
    ev = res.evidence
    assert ev is not None
    assert (ev.champion_requests, ev.champion_errors) == (1000, 20)
    assert (ev.challenger_requests, ev.challenger_errors) == (300, 4)
    assert (res.passed, ev.decision) == (True, "pass")
    assert (res.value, res.threshold) == (ev.statistic, ev.fail_boundary)
    assert res.detail.startswith("challenger 4/300, champion 20/1000 errors; log LR to fail ")
    assert "(>= 3.892)" in res.detail and "(<= -3.892); need 20 per arm" in res.detail
    # Its own ratio, threshold, alpha and beta reach the test.
    strict = evaluate("error_rate", stats, 0.05, alpha=0.2, beta=0.2)
    assert strict.evidence is not None and strict.evidence.fail_boundary < ev.fail_boundary


def test_sequential_error_rate_fails_a_bad_challenger_and_waits_below_its_floor() -> None:
    bad = WindowStats(champion=arm(500, 10), challenger=arm(100, 30))
    res = evaluate("error_rate", bad, 0.05)
    assert res.passed is False and res.evidence is not None
    assert res.evidence.decision == "fail" and res.value is not None and res.value > res.threshold
    short = WindowStats(champion=arm(500, 10), challenger=arm(19, 19))
    waiting = evaluate("error_rate", short, 0.05)
    assert waiting.passed is None and waiting.evidence is not None
    assert waiting.evidence.decision is None
    assert evaluate("error_rate", short, 0.05, min_samples=19).passed is False


def test_sequential_agreement_abstains_without_comparisons_and_judges_with_them() -> None:
    nothing = evaluate("shadow_agreement", WindowStats(), 0.8)
    assert (nothing.passed, nothing.evidence) == (None, None)  # canary without mirroring
    shadow = ShadowStats()
    for _ in range(300):
        shadow.record(0.95)
    shadow.record(None)
    res = evaluate("shadow_agreement", WindowStats(shadow=shadow), 0.8)
    assert res.name == "shadow_agreement"
    assert res.passed is True and res.evidence is not None
    # The failed mirror is a comparison that agreed with nothing.
    assert (res.value, res.threshold) == (pytest.approx(0.95 * 300 / 301), 0.8)
    assert res.evidence.compared == 301 and res.evidence.test == "confidence_sequence"
    assert res.detail.startswith("301 compared, 1 failed shadow calls; mean 0.9468 of 301")
    # With earlier evidence, a window without comparisons keeps its verdict.
    kept = evaluate("shadow_agreement", WindowStats(prior={"shadow_agreement": res.evidence}), 0.8)
    assert kept.passed is True and kept.evidence == res.evidence
    low = ShadowStats()
    for _ in range(100):
        low.record(0.3)
    assert evaluate("shadow_agreement", WindowStats(shadow=low), 0.8).passed is False


def test_check_results_with_evidence_round_trip() -> None:
    ev = Evidence(check="error_rate", test="sprt", challenger_requests=5, decision="pass")
    res = CheckResult("error_rate", True, -4.0, 3.9, "detail", evidence=ev)
    doc = res.to_dict()
    assert doc["evidence"] == ev.model_dump() and isinstance(doc["evidence"], dict)
    assert CheckResult.from_dict(doc) == res
    # Stored before evidence existed: reads back without any.
    old = {k: v for k, v in doc.items() if k not in {"evidence", "report_id"}}
    assert CheckResult.from_dict(old).evidence is None
    assert CheckResult("x", None, None, 0.0).to_dict()["evidence"] is None


def _latency(champion_ms: float, challenger_ms: float, n: int = 200) -> WindowStats:
    champ, chall = ArmStats(), ArmStats()
    for i in range(n):
        champ.record(champion_ms * (1 + i / n))
        chall.record(challenger_ms * (1 + i / n))
    return WindowStats(champion=champ, challenger=chall)


def test_latency_quantile_passes_alike_and_fails_a_slower_distribution() -> None:
    same = evaluate("latency_quantile", _latency(10.0, 10.0), 2.0)
    assert same.passed is True and same.value == pytest.approx(1.0)
    assert same.detail.startswith("p50: 0/200 over 2 x ") and "p90:" in same.detail
    slow = evaluate("latency_quantile", _latency(10.0, 30.0), 2.0)
    assert slow.passed is False and slow.value == pytest.approx(3.0)
    assert evaluate("latency_quantile", _latency(10.0, 30.0), 4.0).passed is True
    assert get_check("latency_quantile").phases == frozenset({"canary"})


def test_latency_quantile_waits_for_samples_on_both_arms() -> None:
    short = _latency(10.0, 30.0, n=19)
    assert evaluate("latency_quantile", short, 2.0) == CheckResult(
        "latency_quantile", None, None, 2.0, "champion 19, challenger 19 of 20 requests"
    )
    no_latency = WindowStats(champion=arm(30, ms=None), challenger=arm(30, ms=None))
    assert evaluate("latency_quantile", no_latency, 2.0) == CheckResult(
        "latency_quantile", None, None, 2.0, "too few latencies to test (0, 0)"
    )
    with pytest.raises(ValueError, match=r"latency_quantile threshold must be > 0, got 0\.0"):
        CheckSpec(name="latency_quantile", threshold=0.0)


def test_latency_quantile_holds_its_level_and_catches_a_slower_challenger() -> None:
    """Seeded lognormal latencies, seeds 0..199: a window of 900 champion and 100 challenger
    calls. At the edge of H0 (same distribution, threshold 1) it fails at most alpha of the
    windows; a challenger twice as slow is caught at threshold 1.5 in most single windows."""
    at_edge = CheckSpec(name="latency_quantile", threshold=1.0)
    lenient = CheckSpec(name="latency_quantile", threshold=1.5)
    check = get_check("latency_quantile")
    false_alarms = caught = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        champion, same, slow = ArmStats(), ArmStats(), ArmStats()
        for x in rng.lognormal(3.0, 0.5, 900):
            champion.record(float(x))
        for x in rng.lognormal(3.0, 0.5, 100):
            same.record(float(x))
        for x in 2.0 * rng.lognormal(3.0, 0.5, 100):
            slow.record(float(x))
        stats = WindowStats(champion=champion, challenger=same)
        false_alarms += check.evaluate(stats, at_edge, 20).passed is False
        stats = WindowStats(champion=champion, challenger=slow)
        caught += check.evaluate(stats, lenient, 20).passed is False
    assert false_alarms / 200 <= 0.02
    assert caught / 200 >= 0.8


def test_latency_quantile_splits_alpha_over_its_quantiles() -> None:
    """15 of 20 challenger calls above the champion's median bound: P(Bin(20, 1/2) >= 15) is
    0.021, under alpha (0.02) times 3 but not under alpha / 3 / 2, the level each quantile's
    sign test gets; the p90 sees none of them above its bound."""
    champion = ArmStats()
    for i in range(1, 201):
        champion.record(float(i))
    challenger = ArmStats()
    for ms in [150.0] * 15 + [50.0] * 5:
        challenger.record(ms)
    got = evaluate("latency_quantile", WindowStats(champion=champion, challenger=challenger), 1.0)
    assert got.name == "latency_quantile" and got.threshold == 1.0
    assert got.passed is True, got.detail
    assert got.detail.startswith("p50: 15/20 over 1 x ") and "; p90: 0/20" in got.detail


def test_a_check_s_own_sample_floor_overrides_the_rollout_s() -> None:
    stats = WindowStats(champion=arm(10, ms=10.0), challenger=arm(10, ms=12.0))
    got = evaluate("latency_p99_ratio", stats, 2.0, min_samples=5)
    assert got.passed is True and got.value == pytest.approx(1.2)
    assert evaluate("latency_p99_ratio", stats, 2.0).passed is None  # 10 of the rollout's 20
