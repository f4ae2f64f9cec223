"""Checking presented keys: each client's budget of failures, and hashing off the event loop."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

import anyio
import pytest

from serving.access import keys as keys_module
from serving.access.keys import ApiKeyStore, add_key
from serving.access.throttle import KeyThrottle
from serving.errors import TooManyAuthFailures, Unauthenticated


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _random_key() -> str:
    return f"cs_{secrets.token_hex(4)}_{secrets.token_urlsafe(8)}"


def _check(throttle: KeyThrottle, store: ApiKeyStore, key: str, client: str) -> None:
    anyio.run(throttle.check, store, key, client)


def test_a_client_spends_its_burst_then_gets_429_with_retry_after_before_any_hash() -> None:
    clock = Clock()
    store = ApiKeyStore([], clock=clock)
    throttle = KeyThrottle(burst=5, rate_per_s=0.5, clock=clock)
    for _ in range(5):
        _check(throttle, store, _random_key(), "10.0.0.1")
    assert store.hashes == 5
    for _ in range(20):
        with pytest.raises(TooManyAuthFailures) as info:
            _check(throttle, store, _random_key(), "10.0.0.1")
    assert store.hashes == 5  # refused before hashing: the flood costs nothing more
    assert info.value.status_code == 429 and info.value.code == "too_many_auth_failures"
    assert info.value.retry_after_s == pytest.approx(2.0)  # one token at 0.5 per second
    assert throttle.refused == 20
    # Another client has its own budget.
    _check(throttle, store, _random_key(), "10.0.0.2")
    assert store.hashes == 6
    # The budget refills with time: one token every 2 s.
    clock.now += 2.0
    _check(throttle, store, _random_key(), "10.0.0.1")
    assert store.hashes == 7
    with pytest.raises(TooManyAuthFailures):
        _check(throttle, store, _random_key(), "10.0.0.1")


def test_good_keys_and_replayed_keys_spend_nothing(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "keys.json"
    good = [add_key(path, f"app{i}", "infer") for i in range(4)]
    store = ApiKeyStore.load(path, {})
    store._clock = clock
    throttle = KeyThrottle(burst=2, rate_per_s=1.0, clock=clock)
    for key in good:  # four uncached good keys: each takes a token and gives it back
        _check(throttle, store, key, "10.0.0.1")
        assert store.authenticate(key).name.startswith("app")
    assert store.hashes == 4
    bad = _random_key()
    _check(throttle, store, bad, "10.0.0.1")
    for _ in range(10):  # the same bad key again: refused from memory, no hash, no token
        _check(throttle, store, bad, "10.0.0.1")
        with pytest.raises(Unauthenticated) as info:
            store.authenticate(bad)
        assert info.value.message == "invalid API key"  # the same words as a hashed refusal
    assert store.hashes == 5
    _check(throttle, store, _random_key(), "10.0.0.1")  # the second failure: budget spent
    with pytest.raises(TooManyAuthFailures):
        _check(throttle, store, _random_key(), "10.0.0.1")
    # A failed key is hashed again once its entry expires (it may have been added since).
    clock.now += keys_module.FAILED_TTL_S + 1
    assert not store.settled(bad)
    with pytest.raises(Unauthenticated):
        store.authenticate(bad)
    assert store.hashes == 7


def test_the_hash_runs_in_a_worker_thread_not_on_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[int] = []
    real = keys_module._hash

    def spy(secret: str, salt: bytes) -> bytes:
        threads.append(threading.get_ident())
        return real(secret, salt)

    monkeypatch.setattr(keys_module, "_hash", spy)
    store, throttle = ApiKeyStore([]), KeyThrottle()
    loop_threads: list[int] = []

    async def main() -> None:
        loop_threads.append(threading.get_ident())
        await throttle.check(store, _random_key(), "10.0.0.1")

    anyio.run(main)
    assert threads and loop_threads and threads[0] != loop_threads[0]


def test_the_client_table_is_bounded_and_forgets_refilled_buckets() -> None:
    clock = Clock()
    throttle = KeyThrottle(burst=3, rate_per_s=1.0, max_clients=100, clock=clock)
    for i in range(1000):
        throttle.take(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle._buckets) == 100
    throttle.take("10.9.9.9")
    throttle.give_back("10.9.9.9")
    assert "10.9.9.9" not in throttle._buckets  # full again: nothing to remember
    # The oldest were evicted, so they start again with a full bucket.
    for _ in range(3):
        throttle.take("10.0.0.0")
    with pytest.raises(TooManyAuthFailures):
        throttle.take("10.0.0.0")


@pytest.mark.parametrize(
    "kwargs", [{"burst": 0}, {"rate_per_s": 0.0}, {"workers": 0}, {"max_clients": 0}]
)
def test_nonsense_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        KeyThrottle(**kwargs)  # type: ignore[arg-type]


def test_a_key_never_seen_is_hashed_whatever_the_clock_reads(tmp_path: Path) -> None:
    """An absent entry in the failure cache means "never failed", even at clock zero."""
    clock = Clock()
    clock.now = 0.0
    path = tmp_path / "keys.json"
    good = add_key(path, "app", "infer")
    store = ApiKeyStore.load(path, {})
    store._clock = clock
    assert not store.settled(good)
    assert store.authenticate(good).name == "app" and store.hashes == 1
    assert store.settled(good)


def test_the_failure_cache_is_bounded_and_keeps_its_live_entries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(keys_module, "CACHE_SIZE", 4)
    clock = Clock()
    store = ApiKeyStore([], clock=clock)

    def fail(key: str) -> None:
        with pytest.raises(Unauthenticated):
            store.authenticate(key)

    old, new = [_random_key() for _ in range(2)], [_random_key() for _ in range(2)]
    for key in old:
        fail(key)
    clock.now += 50
    for key in new:
        fail(key)
    assert len(store._failed) == 4 and store.hashes == 4
    clock.now += 10  # the old two expire now (at exactly 60 s), the new two have 50 s left
    fail(_random_key())  # full: the expired entries make room
    assert len(store._failed) == 3 and store.hashes == 5
    for key in new:
        fail(key)  # still refused from memory
    assert store.hashes == 5
    fail(_random_key())  # full of live entries now: it starts over
    assert len(store._failed) == 4
    fail(_random_key())
    assert len(store._failed) == 1 and store.hashes == 7
    fail(new[0])  # forgotten with the rest: hashed again
    assert store.hashes == 8
