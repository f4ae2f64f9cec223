"""How much of a core the drift capture may spend: a token bucket of CPU seconds.

Capture is a side channel: its features and embeddings cost the ingress about 20 ms of CPU per
request (an 810x1080 photo on this project's 2-core reference box), as much as a fifth of what
the model itself costs. At low traffic that is free; on a saturated box it is taken from the
requests. The bucket holds ``burst_s`` CPU seconds and refills at ``share`` of one core; the
capture thread measures a request only while the bucket is not empty, pays what the measurement
really cost (the thread's own CPU clock), and sheds the rest, counted. Shedding is by arrival
time, not by content, so a window stays an unbiased sample of the traffic, only a smaller one.

Ground floor: the standard library only.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CpuBudget:
    """``share`` of one core on average, up to ``burst_s`` CPU seconds at once.

    :meth:`spend` may take the level below zero (a measurement is paid after it ran); the
    debt is paid back by the refill before the next one is allowed.
    """

    def __init__(
        self, share: float, burst_s: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"CPU share has value {share!r}. Expected 0 < share <= 1.")
        if not burst_s > 0:
            raise ValueError(f"burst_s has value {burst_s!r}. Expected > 0.")
        self.share, self.burst_s = share, burst_s
        self._clock = clock
        self._level = burst_s
        self._last = clock()

    @property
    def level(self) -> float:
        """CPU seconds that may still be spent now (negative: in debt)."""
        now = self._clock()
        self._level = min(self.burst_s, self._level + (now - self._last) * self.share)
        self._last = now
        return self._level

    def available(self) -> bool:
        return self.level > 0.0

    def spend(self, cpu_s: float) -> None:
        self._level = self.level - max(0.0, cpu_s)
