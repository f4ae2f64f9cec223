"""Closed-loop HTTP load: ``concurrency`` clients, each sending its next request on the answer.

One :class:`Result` per run: answered requests (200), refusals by status, and latencies.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx


@dataclass
class Result:
    target: str
    mode: str
    concurrency: int
    requests: int
    seconds: float
    latencies_ms: list[float]
    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s != 200)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def share(self, status: int) -> float:
        total = sum(self.statuses.values())
        return self.statuses[status] / total if total else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, round(q / 100 * (len(data) - 1)))]


def run_http(
    url: str,
    path: str,
    files: dict[str, tuple[str, bytes, str]],
    concurrency: int,
    seconds: float,
    target: str,
    warmup_s: float = 1.0,
) -> Result:
    """POST ``files`` (multipart) to ``url + path`` in a closed loop for ``seconds``.

    The first ``warmup_s`` of each client is not counted (connections, caches)."""
    lat: list[float] = []
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    start = time.monotonic() + warmup_s
    stop = start + seconds

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            while (now := time.monotonic()) < stop:
                t0 = time.perf_counter()
                try:
                    status = c.post(path, files=files).status_code
                except httpx.HTTPError:
                    status = 0
                dt = (time.perf_counter() - t0) * 1000
                if now < start:
                    continue
                with lock:
                    statuses[status] += 1
                    if status == 200:
                        lat.append(dt)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Result(target, "http", concurrency, len(lat), seconds, lat, statuses)


def machine_line() -> str:
    """Cores and load average, printed with every table (a busy box explains odd numbers)."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, load average {load}"
