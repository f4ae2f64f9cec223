"""What a client may make the ingress spend on checking keys it presents.

A presented key that is neither cached as good nor recently failed costs a PBKDF2 hash (~3 ms
of CPU). Done on the event loop, random keys at a few hundred requests a second would stall
every request of that ingress. So a :class:`KeyThrottle`:

- runs the hash in a worker thread, at most ``workers`` at a time (a thread is not the loop,
  and a bound keeps a flood of hashes from taking every core);
- gives each client a bucket of ``burst`` failures, refilled at ``rate_per_s``: every uncached
  check takes a token first and a good key gives it back, so only failures spend them. A client
  with no token left is refused with ``429 too_many_auth_failures`` and a ``Retry-After``,
  before any hash; with auth off (where a key only names the caller) its key is ignored instead.

Clients are told apart by address. Buckets that have refilled are forgotten, and at most
``max_clients`` are kept (the oldest go first), so the table cannot grow without bound.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import anyio.to_thread

from serving.access.keys import ApiKeyStore
from serving.errors import TooManyAuthFailures, Unauthenticated


@dataclass
class _Bucket:
    tokens: float
    at: float


class KeyThrottle:
    def __init__(
        self,
        *,
        burst: int = 10,
        rate_per_s: float = 1.0,
        workers: int = 1,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or rate_per_s <= 0 or workers < 1 or max_clients < 1:
            raise ValueError(
                f"burst ({burst!r}), workers ({workers!r}) and max_clients ({max_clients!r}) "
                f"must be >= 1 and rate_per_s ({rate_per_s!r}) > 0"
            )
        self.burst = float(burst)
        self.rate_per_s = rate_per_s
        self.max_clients = max_clients
        self._clock = clock
        self._workers = anyio.CapacityLimiter(workers)
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.refused = 0  # checks refused with 429 (or, auth off, keys ignored)

    def _bucket(self, client: str, now: float) -> _Bucket:
        bucket = self._buckets.pop(client, None)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate_per_s)
            bucket.at = now
        self._buckets[client] = bucket  # most recent last
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return bucket

    def take(self, client: str) -> None:
        """Take one token for an uncached check by ``client``, or raise TooManyAuthFailures."""
        now = self._clock()
        bucket = self._bucket(client, now)
        if bucket.tokens < 1.0:
            self.refused += 1
            wait = (1.0 - bucket.tokens) / self.rate_per_s
            raise TooManyAuthFailures(
                f"too many invalid API keys from this client; retry in {math.ceil(wait)} s",
                retry_after_s=wait,
            )
        bucket.tokens -= 1.0

    def give_back(self, client: str) -> None:
        """The check passed: return the token it took."""
        bucket = self._buckets.get(client)
        if bucket is not None:
            bucket.tokens = min(self.burst, bucket.tokens + 1.0)
            if bucket.tokens >= self.burst:
                del self._buckets[client]  # a full bucket is the default: forget it

    async def check(self, store: ApiKeyStore, presented: str, client: str) -> None:
        """Settle ``presented`` in ``store``'s caches, hashing off the event loop, within the
        client's budget. Passing or failing, the caller then reads the verdict from the store
        (no second hash); TooManyAuthFailures when the client has no budget left."""
        if store.settled(presented):
            return
        self.take(client)
        try:
            await anyio.to_thread.run_sync(store.authenticate, presented, limiter=self._workers)
        except Unauthenticated:
            return  # the failure is cached in the store and spent a token
        self.give_back(client)
