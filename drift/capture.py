"""Drift capture in the ingress: O(1) on the request path, features and hand-over in a thread.

The request path only appends a :class:`CaptureJob` (references to the decoded input and the
node outputs it already has) to a bounded queue. A daemon thread turns jobs into feature rows
(``drift.rows``) and hands them to the drift monitor in batches through ``sink``. If the
monitor is slow or down, ``sink`` raises or times out: that batch is counted in
``dropped_rows`` and the thread moves on; when the queue is full new jobs are dropped (and
counted) instead of waiting. Nothing here can fail or slow down a request.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drift.rows import request_rows

log = logging.getLogger("canaryserve.drift.capture")
Sink = Callable[[list[dict[str, Any]]], Any]


@dataclass(frozen=True)
class CaptureJob:
    nodes: tuple[tuple[str, str, str], ...]  # (node name, model, output kind)
    value: Any  # the decoded image or clip
    raw: dict[str, Any]  # node name -> output
    versions: dict[str, int]
    source: str  # live | shadow
    request_id: str
    ts: float


class CaptureQueue:
    def __init__(
        self,
        sink: Sink,
        *,
        max_pending: int = 256,
        batch_size: int = 64,
        flush_interval_s: float = 1.0,
        sample_rate: float = 1.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if max_pending < 1 or batch_size < 1 or flush_interval_s <= 0:
            raise ValueError(
                f"max_pending={max_pending!r}, batch_size={batch_size!r}, "
                f"flush_interval_s={flush_interval_s!r}: expected positive values"
            )
        self._sink = sink
        self.max_pending = max_pending
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.sample_rate = sample_rate
        self._rng = rng
        self._jobs: deque[CaptureJob] = deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._busy = False
        self.submitted = 0
        self.sent_rows = 0
        self.dropped_rows = 0
        self.failed_batches = 0
        self.skipped_jobs = 0  # not sampled
        self._last_error_log = 0.0

    @property
    def pending(self) -> int:
        return len(self._jobs)

    def submit(self, job: CaptureJob) -> bool:
        """Queue one request's capture; never blocks, never raises. False if dropped/skipped."""
        if self.sample_rate < 1.0 and self._rng() >= self.sample_rate:
            self.skipped_jobs += 1
            return False
        with self._cv:
            if self._closed or len(self._jobs) >= self.max_pending:
                self.dropped_rows += len(job.nodes)
                return False
            self._jobs.append(job)
            self.submitted += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="drift-capture", daemon=True)
                self._thread.start()
            self._cv.notify()
        return True

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued job has been handed over (or dropped). For tests/shutdown."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            self._cv.notify_all()
            while self._jobs or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.05))
        return True

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    # --- the thread ----------------------------------------------------------------------------

    def _take(self) -> list[CaptureJob]:
        with self._cv:
            if not self._jobs and not self._closed:
                self._cv.wait(self.flush_interval_s)
            jobs = [self._jobs.popleft() for _ in range(min(self.batch_size, len(self._jobs)))]
            self._busy = bool(jobs)
            return jobs

    def _run(self) -> None:
        pending: list[dict[str, Any]] = []
        last_send = time.monotonic()
        while True:
            jobs = self._take()
            for job in jobs:
                try:
                    pending.extend(
                        request_rows(
                            job.nodes,
                            job.value,
                            job.raw,
                            job.versions,
                            source=job.source,
                            request_id=job.request_id,
                            ts=job.ts,
                        )
                    )
                except Exception as e:  # one odd input must not stop capture
                    self.dropped_rows += len(job.nodes)
                    self._warn(f"feature extraction failed for {job.request_id}: {e!r}")
            idle = not self._jobs
            due = time.monotonic() - last_send >= self.flush_interval_s
            if pending and (len(pending) >= self.batch_size or idle or due):
                self._send(pending)
                pending = []
                last_send = time.monotonic()
            with self._cv:
                self._busy = False
                self._cv.notify_all()
                if self._closed and not self._jobs:
                    return

    def _send(self, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start : start + self.batch_size]
            try:
                self._sink(batch)
                self.sent_rows += len(batch)
            except Exception as e:
                self.dropped_rows += len(batch)
                self.failed_batches += 1
                self._warn(f"drift monitor did not take {len(batch)} rows: {e!r}")

    def _warn(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 30:  # one line per 30 s, not one per batch
            self._last_error_log = now
            log.warning(text)
