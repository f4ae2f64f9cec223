"""Drift capture in the ingress: O(1) on the request path, features and hand-over in a thread.

The request path only appends a :class:`CaptureJob` (references to the decoded input and the
node outputs it already has) to a bounded queue (:class:`serving.flusher.BackgroundFlusher`).
Its daemon thread takes up to ``batch_size`` jobs at a time (or what is there every
``flush_interval_s``), turns them into feature rows (``drift.rows``) and hands those to the
drift monitor through ``sink``, ``batch_size`` rows per call. If the monitor is slow or down,
``sink`` raises or times out: that batch is counted in ``dropped_rows`` and the thread moves on,
never retrying, since drift windows are samples and a late row is worth little. When the queue
is full new jobs are dropped (and counted) instead of waiting. The queue is bounded by bytes
too (``max_pending_bytes``): a job holds its request's input, and a clip's decoded frames are
megabytes, so 256 of them could be gigabytes. Nothing here can fail or slow down a request.

A capture that falls behind (a saturated node leaves the thread, at nice 19, little CPU) drops
the jobs older than ``max_age_s`` when it reaches them (counted in ``dropped_rows`` and
``stale_rows``) and catches up with the traffic: windows judge fresh rows, and a rollout window
sees its own requests, not those of minutes ago. A shadow's input is its request's input: its
rows reuse the input features (and embedding) already measured for the live rows.

Image embeddings (:mod:`drift.embeddings`, 10-40 ms of CPU each) are computed in the same
thread for a sample of the captured requests (``embedding_sample_rate``); the other rows carry no
``emb_`` columns. A failed embedding costs the request its embedding, never its rows.

What the thread may spend can be bounded too (a :class:`CpuBudget`, ``cpu_share`` of a core): a
request is measured only while the budget lasts, and its embedding only if some is left after
its features; the requests past it are shed (``shed_rows``, with their shadows' rows), so on a
saturated box capture takes a fixed share of a core instead of a share of every request.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from drift.embeddings import Embedder
from drift.rows import input_row, request_rows
from serving.flusher import BackgroundFlusher

log = logging.getLogger("canaryserve.drift.capture")
Sink = Callable[[list[dict[str, Any]]], Any]
CAPTURE_NICENESS = 19
KEEP_INPUTS = 1024  # requests whose input features a shadow may still reuse
# A request's measured input: its features and embedding (None: not embedded).
Measured = tuple[dict[str, float], dict[str, float] | None]


@dataclass(frozen=True)
class CaptureJob:
    nodes: tuple[tuple[str, str, str], ...]  # (node name, model, output kind)
    value: Any  # the decoded image or clip
    raw: dict[str, Any]  # node name -> output
    versions: dict[str, int]
    source: str  # live | shadow
    request_id: str
    ts: float


class CpuBudget:
    """``share`` of one core on average, up to ``burst_s`` CPU seconds at once: a token bucket
    of CPU seconds. The capture thread measures a request only while it is not empty and pays
    what the measurement really cost (the thread's own CPU clock). Shedding is by arrival time,
    not content, so a window stays an unbiased sample of the traffic, only a smaller one.

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


def input_bytes(value: Any) -> int:
    """Memory a queued input holds: an encoded image's bytes, an array's, a clip's frames'."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    data = getattr(value, "data", None)
    if isinstance(data, bytes):
        return len(data)
    frames = getattr(value, "frames", None)
    return 0 if frames is None else sum(int(getattr(f, "nbytes", 0)) for f in frames)


class CaptureQueue:
    """Samples, queues and hands over captures; counts what was sent, dropped or skipped."""

    def __init__(
        self,
        sink: Sink,
        *,
        max_pending: int = 256,
        batch_size: int = 64,
        flush_interval_s: float = 1.0,
        sample_rate: float = 1.0,
        rng: Callable[[], float] = random.random,
        embedder: Embedder | None = None,
        embedding_sample_rate: float = 0.0,
        embedding_rng: Callable[[], float] = random.random,
        max_age_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        cpu_budget: CpuBudget | None = None,
        cpu_clock: Callable[[], float] = time.thread_time,
        max_pending_bytes: int | None = None,
    ) -> None:
        if max_pending < 1 or batch_size < 1 or flush_interval_s <= 0:
            raise ValueError(
                f"max_pending={max_pending!r}, batch_size={batch_size!r}, "
                f"flush_interval_s={flush_interval_s!r}: expected positive values"
            )
        if not 0.0 <= embedding_sample_rate <= 1.0:
            raise ValueError(
                f"embedding_sample_rate has value {embedding_sample_rate!r}. Expected 0..1."
            )
        if not max_age_s > 0:
            raise ValueError(f"max_age_s has value {max_age_s!r}. Expected > 0.")
        self.max_age_s = max_age_s
        self._clock = clock
        # request id -> the input measured for its last rows, so that its shadow (same input,
        # another version) costs only its prediction features; None: shed, shadows too.
        self._inputs: OrderedDict[str, Measured | None] = OrderedDict()
        self._budget = cpu_budget
        if max_pending_bytes is not None and max_pending_bytes < 1:
            raise ValueError(f"max_pending_bytes has value {max_pending_bytes!r}. Expected > 0.")
        self.max_pending_bytes = max_pending_bytes
        self.pending_bytes = 0  # of the inputs the queued jobs hold (a shared input counts twice)
        self._cpu_clock = cpu_clock  # the capture thread's own CPU time
        self._embedder = embedder
        self.embedding_sample_rate = embedding_sample_rate
        self._embedding_rng = embedding_rng  # drawn in the capture thread only
        self._sink = sink
        self.max_pending = max_pending
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.sample_rate = sample_rate
        self._rng = rng
        self._jobs: BackgroundFlusher[CaptureJob] = BackgroundFlusher(
            self._capture,
            max_pending=max_pending,
            batch_size=batch_size,
            flush_interval_s=flush_interval_s,
            name="drift-capture",
            # Features and embeddings yield the ingress's cores to requests under load (a
            # full queue drops captures, counted: drift windows are samples).
            niceness=CAPTURE_NICENESS,
        )
        self._lock = threading.Lock()  # the counters: bumped by request threads and the thread
        self.sent_rows = 0
        self.dropped_rows = 0
        self.stale_rows = 0  # of dropped_rows: older than max_age_s when the thread got to them
        self.shed_rows = 0  # not measured: the CPU budget was spent
        self.failed_batches = 0
        self.skipped_jobs = 0  # not sampled
        self.embedded_jobs = 0
        self._last_error_log = 0.0

    @property
    def pending(self) -> int:
        return self._jobs.pending

    @property
    def submitted(self) -> int:
        """Jobs accepted into the queue."""
        return self._jobs.submitted

    def submit(self, job: CaptureJob) -> bool:
        """Queue one request's capture; never blocks, never raises. False if dropped/skipped."""
        if self.sample_rate < 1.0 and self._rng() >= self.sample_rate:
            with self._lock:
                self.skipped_jobs += 1
            return False
        size = input_bytes(job.value)
        with self._lock:
            limit = self.max_pending_bytes
            if limit is not None and self.pending_bytes + size > limit:
                self.dropped_rows += len(job.nodes)
                return False
            self.pending_bytes += size
        if self._jobs.submit(job):
            return True
        with self._lock:
            self.pending_bytes -= size
            self.dropped_rows += len(job.nodes)
        return False

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued job has been handed over (or dropped). For tests/shutdown."""
        return self._jobs.flush(timeout_s)

    def close(self) -> None:
        """Refuse new jobs; the thread hands over what is queued, then exits. Never waits."""
        self._jobs.close(wait=False)

    # --- the thread ----------------------------------------------------------------------------

    def _capture(self, jobs: list[CaptureJob], _attempt: int) -> list[CaptureJob]:
        try:
            self._capture_rows(jobs)
        finally:
            released = sum(input_bytes(job.value) for job in jobs)
            with self._lock:
                self.pending_bytes -= released
        return []  # nothing is retried: a batch the monitor did not take is counted as dropped

    def _capture_rows(self, jobs: list[CaptureJob]) -> None:
        # A capture that fell behind (a saturated node) skips what is too old to matter and
        # catches up with the traffic, instead of serving windows minutes-old rows.
        fresh_after = self._clock() - self.max_age_s
        stale = sum(len(job.nodes) for job in jobs if job.ts < fresh_after)
        if stale:
            with self._lock:
                self.dropped_rows += stale
                self.stale_rows += stale
            jobs = [job for job in jobs if job.ts >= fresh_after]
        rows: list[dict[str, Any]] = []
        for job in jobs:
            try:
                measured = self._measured(job)
                if measured is None:
                    with self._lock:
                        self.shed_rows += len(job.nodes)
                    continue
                inputs, embedding = measured
                rows.extend(
                    request_rows(
                        job.nodes,
                        job.value,
                        job.raw,
                        job.versions,
                        source=job.source,
                        request_id=job.request_id,
                        ts=job.ts,
                        embedding=embedding,
                        inputs=inputs,
                    )
                )
            except Exception as e:  # one odd input must not stop capture
                with self._lock:
                    self.dropped_rows += len(job.nodes)
                self._warn(f"feature extraction failed for {job.request_id}: {e!r}")
        if rows:
            self._send(rows)

    def _measured(self, job: CaptureJob) -> Measured | None:
        """The input features (and maybe embedding) of ``job``'s request: measured once per
        request while the CPU budget lasts; None when the request was shed."""
        if job.request_id in self._inputs:
            return self._inputs[job.request_id]
        budget = self._budget
        if budget is not None and not budget.available():
            self._remember(job.request_id, None)
            return None
        started = self._cpu_clock()
        try:
            inputs = input_row(job.value)
            embedding = None
            if budget is None or budget.level > self._cpu_clock() - started:
                embedding = self._embedding(job)
        finally:
            if budget is not None:
                budget.spend(self._cpu_clock() - started)
        self._remember(job.request_id, (inputs, embedding))
        return inputs, embedding

    def _embedding(self, job: CaptureJob) -> dict[str, float] | None:
        """The embedding of a sampled request's input, else None."""
        embedder, rate = self._embedder, self.embedding_sample_rate
        if embedder is None or rate <= 0.0 or not embedder.available:
            return None
        if self._embedding_rng() >= rate:
            return None
        try:
            (row,) = embedder.rows([job.value])
        except Exception as e:  # a row without an embedding is still a row
            self._warn(f"embedding failed for {job.request_id}: {e!r}")
            return None
        with self._lock:
            self.embedded_jobs += 1
        return row

    def _remember(self, request_id: str, measured: Measured | None) -> None:
        self._inputs[request_id] = measured
        while len(self._inputs) > KEEP_INPUTS:
            self._inputs.popitem(last=False)

    def _send(self, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start : start + self.batch_size]
            try:
                self._sink(batch)
            except Exception as e:
                with self._lock:
                    self.dropped_rows += len(batch)
                    self.failed_batches += 1
                self._warn(f"drift monitor did not take {len(batch)} rows: {e!r}")
            else:
                with self._lock:
                    self.sent_rows += len(batch)

    def _warn(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 30:  # one line per 30 s, not one per batch
            self._last_error_log = now
            log.warning(text)
