"""Admission control of one ingress replica: at most ``ingress.max_in_flight`` requests.

Past the limit a request is refused at once with ``503 overloaded`` and ``Retry-After``
(here, not in Ray's proxy, so callers get our error body and the refusal is measured).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from serving import metrics
from serving.config import IngressSpec
from serving.errors import Overloaded


class Admission:
    def __init__(self, spec: IngressSpec) -> None:
        self._spec = spec
        self._in_flight: dict[str, int] = {}
        self.replica = uuid.uuid4().hex[:8]  # the in-flight gauge is per ingress replica

    @property
    def total(self) -> int:
        return sum(self._in_flight.values())

    @contextmanager
    def slot(self, route: str) -> Iterator[None]:
        """Hold one of the replica's slots for ``route`` (Overloaded when none is free)."""
        total, spec = self.total, self._spec
        if total >= spec.max_in_flight:
            metrics.count_rejected(route)
            raise Overloaded(
                f"{total} requests in flight on this replica (limit {spec.max_in_flight}); "
                f"retry after {spec.retry_after_s:g}s",
                retry_after_s=spec.retry_after_s,
            )
        self._in_flight[route] = self._in_flight.get(route, 0) + 1
        metrics.set_in_flight(route, self.replica, self._in_flight[route])
        try:
            yield
        finally:
            self._in_flight[route] -= 1
            metrics.set_in_flight(route, self.replica, self._in_flight[route])
