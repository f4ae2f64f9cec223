"""Circuit breakers per (model, version), so a failing challenger stops taking traffic at once.

The rollout controller reacts to metrics on a timescale of seconds to minutes; a breaker reacts
on the next request. Closed: every call goes through and failures are counted in a sliding
window. Open: no call goes through until the cooldown has passed. Half-open: exactly one trial
call goes through; its success closes the breaker, its failure opens it again.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int,
        window_s: float,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # No defaults: the serving config (canary.breaker_*) is the one place they are set.
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold {failure_threshold!r} must be >= 1")
        if window_s <= 0:
            raise ValueError(f"window_s {window_s!r} must be > 0")
        if cooldown_s < 0:
            raise ValueError(f"cooldown_s {cooldown_s!r} must be >= 0")
        self.failure_threshold = failure_threshold
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: deque[float] = deque()
        self._state: State = "closed"
        self._opened_at = 0.0
        self._trial_started: float | None = None  # set while the half-open trial is out

    @property
    def state(self) -> State:
        with self._lock:
            return self._current(self._clock())

    def allow(self) -> bool:
        """May a call go to this version now? In half-open, True for the one trial call only."""
        with self._lock:
            now = self._clock()
            state = self._current(now)
            if state == "closed":
                return True
            if state == "open":
                return False
            # A trial whose caller never reported back (cancelled, crashed) would otherwise hold
            # the breaker half-open for ever: after another cooldown, let a new trial through.
            if self._trial_started is not None and now - self._trial_started < self.cooldown_s:
                return False
            self._trial_started = now
            return True

    def record_success(self) -> None:
        with self._lock:
            if self._current(self._clock()) == "half_open":
                self._state = "closed"
                self._failures.clear()
                self._trial_started = None
            # In "open", a success is a call that started before the breaker opened: it says
            # nothing about the version now, so the cooldown runs on.

    def record_failure(self) -> None:
        with self._lock:
            now = self._clock()
            state = self._current(now)
            if state == "half_open":
                self._open(now)
            elif state == "closed":
                self._failures.append(now)
                self._prune(now)
                if len(self._failures) >= self.failure_threshold:
                    self._open(now)
            # Failures of calls already in flight when it opened do not extend the cooldown.

    def _current(self, now: float) -> State:
        if self._state == "open" and now - self._opened_at >= self.cooldown_s:
            self._state = "half_open"
            self._trial_started = None
        return self._state

    def _open(self, now: float) -> None:
        self._state = "open"
        self._opened_at = now
        self._failures.clear()
        self._trial_started = None

    def _prune(self, now: float) -> None:
        while self._failures and now - self._failures[0] > self.window_s:
            self._failures.popleft()


class Breakers:
    """One breaker per (model, version), created on first use with shared settings."""

    def __init__(
        self,
        *,
        failure_threshold: int,
        window_s: float,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._make = functools.partial(
            CircuitBreaker,
            failure_threshold=failure_threshold,
            window_s=window_s,
            cooldown_s=cooldown_s,
            clock=clock,
        )
        self._breakers: dict[tuple[str, int], CircuitBreaker] = {}
        self._lock = threading.Lock()

    def get(self, model: str, version: int) -> CircuitBreaker:
        with self._lock:
            breaker = self._breakers.get((model, version))
            if breaker is None:
                breaker = self._make()
                self._breakers[(model, version)] = breaker
            return breaker

    def open_versions(self) -> list[tuple[str, int]]:
        """(model, version) pairs whose breaker is not closed: open, or half-open on trial."""
        with self._lock:
            items = list(self._breakers.items())
        return sorted(key for key, b in items if b.state != "closed")
