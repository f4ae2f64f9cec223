from __future__ import annotations

import hashlib
import json
import math
import random

import pytest

from serving.canary.routes import VersionTable, routes_from_table
from serving.canary.split import ModelRoute, Router, bucket, key_hash
from serving.errors import UnknownModel, VersionNotServed

N = 20_000
KEYS = [f"camera-{i}" for i in range(N)]


def within_4_sigma(count: int, n: int, p: float) -> bool:
    sigma = math.sqrt(n * p * (1 - p))
    return abs(count - n * p) <= 4 * sigma


def detector(weight: float, shadow: float = 0.0, rollout: str = "r1") -> dict[str, ModelRoute]:
    return {
        "detector": ModelRoute(
            "detector",
            champion=1,
            challenger=2,
            weight=weight,
            shadow_share=shadow,
            rollout_id=rollout,
        )
    }


def challenger_keys(weight: float, rollout: str = "r1") -> set[str]:
    router, routes = Router(), detector(weight, rollout=rollout)
    return {
        k for k in KEYS if router.decide(["detector"], routes, {}, k).challengers() == ["detector"]
    }


def test_bucket_is_the_documented_hash() -> None:
    expected = int(hashlib.sha256(b"r1\x00camera-7").hexdigest(), 16) % 10_000
    assert bucket("r1", "camera-7") == expected
    assert all(0 <= bucket("r1", k) < 10_000 for k in KEYS[:1000])


def test_key_hash_is_short_stable_and_hides_the_key() -> None:
    h = key_hash("tenant-secret-42")
    assert h == key_hash("tenant-secret-42") and len(h) == 16
    assert "tenant" not in h and h != key_hash("tenant-secret-43")


@pytest.mark.parametrize("weight", [5, 25, 50])
def test_keyed_split_matches_weight(weight: float) -> None:
    count = len(challenger_keys(weight))
    assert within_4_sigma(count, N, weight / 100), count


def test_same_key_same_arm_across_routers() -> None:
    routes = detector(25)
    first = [Router(random.Random(1)).decide(["detector"], routes, {}, k) for k in KEYS[:500]]
    again = [Router(random.Random(2)).decide(["detector"], routes, {}, k) for k in KEYS[:500]]
    assert [d.versions() for d in first] == [d.versions() for d in again]
    node = first[0].per_model["detector"]
    assert node.sticky and node.bucket == bucket("r1", KEYS[0])
    assert node.key_hash == key_hash(KEYS[0])


def test_raising_weight_only_moves_keys_to_challenger() -> None:
    at_25, at_50 = challenger_keys(25), challenger_keys(50)
    assert at_25 <= at_50
    assert within_4_sigma(len(at_50 - at_25), N, 0.25)


def test_new_rollout_id_reshuffles_buckets() -> None:
    r1, r2 = challenger_keys(50, "r1"), challenger_keys(50, "r2")
    assert within_4_sigma(len(r2), N, 0.5)
    # Independent halves overlap on about a quarter of the keys, not on all of them.
    assert within_4_sigma(len(r1 & r2), N, 0.25)


def test_without_rollout_id_keys_still_spread() -> None:
    routes = {"detector": ModelRoute("detector", champion=1, challenger=2, weight=50)}
    router = Router()
    count = sum(
        router.decide(["detector"], routes, {}, k).versions()["detector"] == 2 for k in KEYS
    )
    assert within_4_sigma(count, N, 0.5)


def test_no_key_splits_at_random_with_seeded_rng() -> None:
    routes = detector(25)
    router = Router(random.Random(7))
    decisions = [router.decide(["detector"], routes, {}, None) for _ in range(N)]
    count = sum(d.challengers() == ["detector"] for d in decisions)
    assert within_4_sigma(count, N, 0.25)
    node = decisions[0].per_model["detector"]
    assert not node.sticky and node.bucket is None and node.key_hash is None
    replay = Router(random.Random(7))
    assert [replay.decide(["detector"], routes, {}, None).versions() for _ in range(N)] == [
        d.versions() for d in decisions
    ]


@pytest.mark.parametrize("key", ["camera-1", None])
def test_weight_edges(key: str | None) -> None:
    router = Router(random.Random(0))
    for _ in range(200):
        assert router.decide(["detector"], detector(100), {}, key).versions() == {"detector": 2}
        assert router.decide(["detector"], detector(0), {}, key).versions() == {"detector": 1}
    lone = {"detector": ModelRoute("detector", champion=3, weight=50, shadow_share=1.0)}
    d = router.decide(["detector"], lone, {}, key).per_model["detector"]
    assert (d.version, d.arm, d.shadow_version) == (3, "champion", None)


def test_pins_force_versions_and_are_never_shadowed() -> None:
    routes = detector(0, shadow=1.0)
    routes["ocr"] = ModelRoute("ocr", champion=4, challenger=5, weight=100, shadow_share=1.0)
    router = Router(random.Random(0))
    d = router.decide(["detector", "ocr"], routes, {"detector": 2, "ocr": 4}, "camera-1")
    det, ocr = d.per_model["detector"], d.per_model["ocr"]
    assert (det.version, det.arm, det.pinned) == (2, "challenger", True)
    assert (ocr.version, ocr.arm, ocr.pinned) == (4, "champion", True)
    assert d.shadows() == {} and not det.sticky and det.bucket is None
    assert d.challengers() == ["detector"]
    # Unpinned, the same routes shadow every champion request and send ocr to its challenger.
    free = router.decide(["detector", "ocr"], routes, {}, "camera-1")
    assert free.versions() == {"detector": 1, "ocr": 5} and free.shadows() == {"detector": 2}


def test_pin_to_unserved_version_quotes_what_is_served() -> None:
    with pytest.raises(VersionNotServed, match=r"detector version 7 .*served versions: \[1, 2\]"):
        Router().decide(["detector"], detector(10), {"detector": 7}, None)


def test_unknown_models() -> None:
    with pytest.raises(UnknownModel, match="'ocr'"):
        Router().decide(["ocr"], detector(10), {}, None)
    with pytest.raises(UnknownModel, match="pinned model 'nope'"):
        Router().decide(["detector"], detector(10), {"nope": 1}, None)


def test_shadow_share_only_on_champion_requests() -> None:
    router = Router(random.Random(3))
    decisions = [router.decide(["detector"], detector(25, shadow=0.2), {}, k) for k in KEYS]
    champion = [d for d in decisions if d.versions()["detector"] == 1]
    challenger = [d for d in decisions if d.versions()["detector"] == 2]
    assert all(d.shadows() == {} for d in challenger)
    shadowed = [d for d in champion if d.shadows()]
    assert all(d.shadows() == {"detector": 2} for d in shadowed)
    assert within_4_sigma(len(shadowed), len(champion), 0.2)
    none = [router.decide(["detector"], detector(25, shadow=0.0), {}, k) for k in KEYS[:2000]]
    assert not any(d.shadows() for d in none)


def test_with_champions_moves_routed_challengers_back() -> None:
    routes = detector(100)
    routes["ocr"] = ModelRoute("ocr", champion=4, challenger=5, weight=0, shadow_share=1.0)
    routes["action"] = ModelRoute("action", champion=1, challenger=3, weight=0)
    d = Router().decide(["detector", "ocr", "action"], routes, {"action": 3}, "camera-1")
    assert d.versions() == {"detector": 2, "ocr": 4, "action": 3}
    assert d.shadows() == {"ocr": 5}
    back = d.with_champions()
    # A pin is honoured or fails; it never silently falls back.
    assert back.versions() == {"detector": 1, "ocr": 4, "action": 3}
    assert back.challengers() == ["action"] and back.shadows() == {}
    assert back.per_model["detector"].fallback and back.per_model["detector"].arm == "champion"
    assert not back.per_model["ocr"].fallback
    assert d.versions()["detector"] == 2  # the original decision is untouched


def test_to_dict_is_json_and_carries_no_raw_key() -> None:
    d = Router().decide(["detector"], detector(50), {}, "tenant-secret")
    payload = json.dumps(d.to_dict())
    assert "tenant-secret" not in payload
    assert json.loads(payload)["detector"]["key_hash"] == key_hash("tenant-secret")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weight": 120.0}, "weight 120.0"),
        ({"shadow_share": 1.5}, "shadow_share 1.5"),
        ({"challenger": 1}, "challenger 1 is also the champion"),
    ],
)
def test_route_validation_quotes_bad_value(kwargs: dict[str, float], message: str) -> None:
    base: dict = {"model": "detector", "champion": 1, "challenger": 2}
    with pytest.raises(ValueError, match=message):
        ModelRoute(**{**base, **kwargs})


def test_routes_from_table() -> None:
    table = VersionTable(
        served={"detector": [1, 2], "ocr": [1]},
        default={"detector": 1, "ocr": 1},
        aliases={"detector": {"champion": 1, "challenger": 2}, "ocr": {"challenger": 9}},
    )
    routes = routes_from_table(table)
    assert routes["detector"] == ModelRoute("detector", champion=1, challenger=2)
    assert routes["ocr"] == ModelRoute("ocr", champion=1)  # alias 9 has no deployment


def test_a_pinned_decision_records_everything_the_audit_and_fallback_need() -> None:
    from serving.canary.split import NodeDecision

    d = Router().decide(["detector"], detector(30), {"detector": 2}, "camera-1")
    assert d.per_model["detector"] == NodeDecision(
        model="detector",
        version=2,
        arm="challenger",
        pinned=True,
        weight=30,
        bucket=None,
        key_hash=key_hash("camera-1"),
        sticky=False,
        shadow_version=None,
        champion=1,
    )


def test_routes_from_table_for_a_model_with_no_aliases_at_all() -> None:
    table = VersionTable(served={"detector": [1, 2]}, default={"detector": 1}, aliases={})
    assert routes_from_table(table) == {"detector": ModelRoute("detector", champion=1)}


class _FixedRng:
    """A Router RNG whose draws are given; counts them."""

    def __init__(self, value: float) -> None:
        self.value, self.draws = value, 0

    def random(self) -> float:
        self.draws += 1
        return self.value


def _key_in_bucket(rollout: str, wanted: int) -> str:
    return next(k for k in (f"k-{i}" for i in range(10**6)) if bucket(rollout, k) == wanted)


def test_a_keyed_split_is_a_complete_decision() -> None:
    from serving.canary.split import NodeDecision

    key = _key_in_bucket("r1", 100)  # well below 25 % (bucket 2500)
    d = Router().decide(["detector"], detector(25), {}, key).per_model["detector"]
    assert d == NodeDecision(
        model="detector",
        version=2,
        arm="challenger",
        pinned=False,
        weight=25,
        bucket=100,
        key_hash=key_hash(key),
        sticky=True,
        shadow_version=None,
        champion=1,
    )


def test_the_weight_boundary_bucket_goes_to_the_champion() -> None:
    edge = _key_in_bucket("r1", 2500)  # 25 % means buckets 0..2499
    d = Router().decide(["detector"], detector(25), {}, edge).per_model["detector"]
    assert (d.arm, d.bucket) == ("champion", 2500)
    below = _key_in_bucket("r1", 2499)
    assert Router().decide(["detector"], detector(25), {}, below).challengers() == ["detector"]


def test_a_sub_percent_weight_still_sends_its_buckets_to_the_challenger() -> None:
    key = _key_in_bucket("r1", 10)  # 0.5 % means buckets 0..49
    assert Router().decide(["detector"], detector(0.5), {}, key).challengers() == ["detector"]


def test_at_weight_zero_no_bucket_is_computed_and_nothing_is_sticky() -> None:
    d = Router().decide(["detector"], detector(0), {}, "camera-1").per_model["detector"]
    assert (d.arm, d.bucket, d.sticky) == ("champion", None, False)


def test_keyless_and_shadow_draws_compare_strictly() -> None:
    # A draw of exactly weight/100 stays on the champion; exactly shadow_share is not mirrored.
    rng = _FixedRng(0.25)
    d = Router(rng).decide(["detector"], detector(25), {}, None).per_model["detector"]  # type: ignore[arg-type]
    assert d.arm == "champion"
    rng = _FixedRng(0.5)
    d = Router(rng).decide(["detector"], detector(0, shadow=0.5), {}, None).per_model["detector"]  # type: ignore[arg-type]
    assert (d.arm, d.shadow_version) == ("champion", None)


def test_no_shadow_share_draws_no_random_number() -> None:
    # Seeded routing stays reproducible: only a configured mirror consumes a draw.
    rng = _FixedRng(0.0)
    Router(rng).decide(["detector"], detector(0), {}, "camera-1")  # type: ignore[arg-type]
    assert rng.draws == 0


def test_a_weight_over_100_is_refused() -> None:
    with pytest.raises(ValueError, match="weight"):
        ModelRoute("detector", champion=1, challenger=2, weight=100.5)
