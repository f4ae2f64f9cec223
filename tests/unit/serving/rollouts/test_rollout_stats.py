"""RolloutStats: the ingress's records, per rollout, cut into analysis windows."""

from __future__ import annotations

from serving.canary.records import RolloutRecord
from serving.rollouts.stats import RolloutStats

T0 = 1_000_000.0


def _call(
    arm: str, ts: float = T0, *, ok: bool = True, ms: float | None = 10.0, rid: str = "r1"
) -> RolloutRecord:
    return RolloutRecord(rid, "detector", ts, "call", arm, ok, ms)  # type: ignore[arg-type]


def _shadow(agreement: float | None, ts: float = T0, rid: str = "r1") -> RolloutRecord:
    return RolloutRecord(rid, "detector", ts, "shadow", agreement=agreement)


def _breaker(ts: float = T0, rid: str = "r1") -> RolloutRecord:
    return RolloutRecord(rid, "detector", ts, "breaker")


def test_each_kind_of_record_lands_in_its_arm() -> None:
    stats = RolloutStats()
    taken = stats.add(
        [
            _call("champion", ms=10.0),
            _call("champion", ok=False, ms=30.0),
            _call("challenger", ms=20.0),
            _shadow(0.5),
            _shadow(1.0),
            _shadow(None),  # the shadow call failed
        ]
    )
    assert taken == 6
    w = stats.window("r1", T0)
    assert (w.champion.requests, w.champion.errors) == (2, 1)
    assert sorted(w.champion.latencies_ms) == [10.0, 30.0]
    assert (w.challenger.requests, w.challenger.errors) == (1, 0)
    assert w.challenger.latencies_ms == [20.0]
    assert (w.shadow.compared, w.shadow.failures, w.shadow.agreement) == (3, 1, 0.5)
    assert w.circuit_open is False
    stats.add([_breaker()])
    assert stats.window("r1", T0).circuit_open is True


def test_a_call_without_latency_counts_but_is_not_a_latency_sample() -> None:
    stats = RolloutStats()
    stats.add([_call("challenger", ok=False, ms=None)])
    arm = stats.window("r1", T0).challenger
    assert (arm.requests, arm.errors, arm.latency_samples) == (1, 1, 0)


def test_records_without_a_rollout_are_not_taken() -> None:
    stats = RolloutStats()
    assert stats.add([_call("champion", rid=""), _call("champion")]) == 1
    assert stats.window("r1", T0).champion.requests == 1


def test_rollouts_are_kept_apart() -> None:
    stats = RolloutStats()
    stats.add([_call("challenger", rid="a"), _call("challenger", rid="b"), _breaker(rid="b")])
    a, b = stats.window("a", T0), stats.window("b", T0)
    assert (a.challenger.requests, a.circuit_open) == (1, False)
    assert (b.challenger.requests, b.circuit_open) == (1, True)
    assert stats.window("unknown", T0).champion.requests == 0


def test_the_window_is_cut_at_its_start_and_older_records_are_dropped() -> None:
    stats = RolloutStats()
    stats.add(
        [
            _call("challenger", T0 - 1),
            _shadow(0.0, T0 - 1),
            _breaker(T0 - 1),
            _call("challenger", T0),  # a record at the very start belongs to the window
            _shadow(1.0, T0 + 5),
        ]
    )
    w = stats.window("r1", T0)
    assert w.challenger.requests == 1
    assert (w.shadow.compared, w.shadow.agreement) == (1, 1.0)
    assert w.circuit_open is False  # the breaker opened before this window
    # The controller only moves forward: what an earlier window held is gone for good.
    again = stats.window("r1", T0 - 10)
    assert (again.challenger.requests, again.shadow.compared) == (1, 1)


def test_forget_drops_a_rollouts_records() -> None:
    stats = RolloutStats()
    stats.add([_call("challenger"), _call("challenger", rid="other")])
    stats.forget("r1")
    assert stats.window("r1", T0).challenger.requests == 0
    assert stats.window("other", T0).challenger.requests == 1
    stats.forget("never-seen")  # no error


def test_max_records_keeps_the_newest_of_each_kind() -> None:
    stats = RolloutStats(max_records=3)
    calls = [_call("challenger", T0 + i, ms=float(i)) for i in range(5)]
    shadows = [_shadow(i / 10, T0 + i) for i in range(5)]
    breakers = [_breaker(T0 + i) for i in range(5)]
    assert stats.add(calls + shadows + breakers) == 15
    w = stats.window("r1", T0)
    assert w.challenger.requests == 3
    assert sorted(w.challenger.latencies_ms) == [2.0, 3.0, 4.0]
    assert w.shadow.compared == 3
    assert abs(w.shadow.agreement_sum - (0.2 + 0.3 + 0.4)) < 1e-9
    assert w.circuit_open is True


def _keyed(arm: str, key: str | None, ts: float, ok: bool = True) -> RolloutRecord:
    return RolloutRecord("r1", "detector", ts, "call", arm, ok, 10.0, key_hash=key)  # type: ignore[arg-type]


def test_one_routing_key_counts_at_most_k_calls_per_arm_and_window() -> None:
    stats = RolloutStats()
    # An attacker's key sends 50 failing requests to the challenger; three honest keys one each.
    storm = [_keyed("challenger", "mallory", T0 + i * 0.01, ok=False) for i in range(50)]
    honest = [_keyed("challenger", f"user-{i}", T0 + 1 + i) for i in range(3)]
    stats.add(storm + honest + [_keyed("champion", "mallory", T0 + 5)])
    w = stats.window("r1", T0, max_per_key=2)
    assert (w.challenger.requests, w.challenger.errors) == (5, 2)
    assert w.champion.requests == 1  # the cap is per arm: the key's champion call still counts
    # Without a cap (the caller's choice) every call counts.
    assert stats.window("r1", T0).challenger.requests == 53


def test_the_per_key_cap_keeps_the_first_calls_in_time_and_leaves_key_less_ones_alone() -> None:
    stats = RolloutStats()
    # Replicas report out of order: the cap keeps the key's earliest calls, whatever came first.
    stats.add(
        [_keyed("challenger", "k", T0 + 2, ok=True), _keyed("challenger", "k", T0 + 1, ok=False)]
    )
    stats.add([_keyed("challenger", None, T0 + 3) for _ in range(4)])
    w = stats.window("r1", T0, max_per_key=1)
    assert (w.challenger.requests, w.challenger.errors) == (5, 1)
    # A new window counts the key afresh.
    stats.add([_keyed("challenger", "k", T0 + 10), _keyed("challenger", "k", T0 + 11)])
    assert stats.window("r1", T0 + 10, max_per_key=1).challenger.requests == 1


def test_calls_at_the_same_instant_are_ordered_by_time_alone() -> None:
    stats = RolloutStats()
    same = [
        # Alike up to the latency: (None, 5.0) must never be compared.
        RolloutRecord("r1", "detector", T0, "call", "challenger", False, None, key_hash=None),
        RolloutRecord("r1", "detector", T0, "call", "challenger", False, 5.0, key_hash="k"),
    ]
    stats.add(same)
    w = stats.window("r1", T0, max_per_key=1)
    assert (w.challenger.requests, w.challenger.errors, w.challenger.latencies_ms) == (2, 2, [5.0])
