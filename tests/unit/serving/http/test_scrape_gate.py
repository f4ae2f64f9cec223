"""``/metrics`` under a burst: one scrape at a time, shared, on its own thread, bounded in time."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from serving.errors import MetricsUnavailable
from serving.http.observability_routes import ScrapeGate


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_scrapes_runs_one_and_shares_it() -> None:
    ran: list[int] = []

    def scrape() -> str:
        ran.append(1)
        time.sleep(0.2)
        return f"canaryserve_up {len(ran)}\n"

    clock = Clock()
    gate = ScrapeGate(scrape, ttl_s=1.0, clock=clock)

    async def burst() -> list[str]:
        return await asyncio.gather(*(gate.text() for _ in range(50)))

    assert set(asyncio.run(burst())) == {"canaryserve_up 1\n"}
    assert len(ran) == 1 and gate.scrapes == 1
    assert asyncio.run(gate.text()) == "canaryserve_up 1\n"  # within ttl: reused
    clock.now += 1.5
    assert asyncio.run(gate.text()) == "canaryserve_up 2\n"  # stale: scraped again
    assert len(ran) == 2


def test_a_stuck_scrape_answers_503_and_holds_no_shared_thread() -> None:
    release = threading.Event()

    def stuck() -> str:
        release.wait(10)
        return "late\n"

    gate = ScrapeGate(stuck, ttl_s=0.0, timeout_s=0.2)

    async def main() -> float:
        results = await asyncio.gather(*(gate.text() for _ in range(40)), return_exceptions=True)
        assert all(isinstance(r, MetricsUnavailable) for r in results)
        assert gate.scrapes == 1  # the 40 waited on one scrape, not 40 of them
        # The loop's shared threads (audit, admin and registry reads use them) are all free.
        t0 = time.perf_counter()
        await asyncio.gather(*(asyncio.to_thread(time.sleep, 0.01) for _ in range(8)))
        return time.perf_counter() - t0

    try:
        assert asyncio.run(main()) < 5.0
    finally:
        release.set()
    err = MetricsUnavailable("x")
    assert err.status_code == 503 and err.code == "metrics_unavailable"


def test_a_failed_scrape_is_not_cached() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("GCS unreachable")
        return "ok\n"

    gate = ScrapeGate(flaky, ttl_s=60.0)
    with pytest.raises(OSError):
        asyncio.run(gate.text())
    assert asyncio.run(gate.text()) == "ok\n"
