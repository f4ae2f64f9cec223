"""Drift capture in the ingress: O(1) on the request path, features and hand-over in a thread.

The request path only appends a :class:`CaptureJob` (references to the decoded input and the
node outputs it already has) to a bounded queue (:class:`serving.flusher.BackgroundFlusher`).
Its daemon thread takes up to ``batch_size`` jobs at a time (or what is there every
``flush_interval_s``), turns them into feature rows (``drift.rows``) and hands those to the
drift monitor through ``sink``, ``batch_size`` rows per call. If the monitor is slow or down,
``sink`` raises or times out: that batch is counted in ``dropped_rows`` and the thread moves on,
never retrying, since drift windows are samples and a late row is worth little. When the queue
is full new jobs are dropped (and counted) instead of waiting. Nothing here can fail or slow
down a request.

A capture that falls behind (a saturated node leaves the thread, at nice 19, little CPU) drops
the jobs older than ``max_age_s`` when it reaches them (counted in ``dropped_rows`` and
``stale_rows``) and catches up with the traffic: windows judge fresh rows, and a rollout window
sees its own requests, not those of minutes ago. A shadow's input is its request's input: its
rows reuse the input features (and embedding) already measured for the live rows.

Image embeddings (:mod:`drift.embeddings`, ~10 ms of CPU each) are computed in the same thread
for a sample of the captured requests (``embedding_sample_rate``); the other rows carry no
``emb_`` columns. A failed embedding costs the batch its embeddings, never its rows.
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

from drift.embeddings import Embedder
from drift.rows import input_row, request_rows
from serving.flusher import BackgroundFlusher

log = logging.getLogger("canaryserve.drift.capture")
Sink = Callable[[list[dict[str, Any]]], Any]
CAPTURE_NICENESS = 19
KEEP_INPUTS = 1024  # requests whose input features a shadow may still reuse


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
        # request id -> (input features, embedding) of the last rows built for it, so that
        # its shadow (same input, another version) costs only its prediction features.
        self._inputs: OrderedDict[str, tuple[dict[str, float], dict[str, float] | None]] = (
            OrderedDict()
        )
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
        if self._jobs.submit(job):
            return True
        with self._lock:
            self.dropped_rows += len(job.nodes)
        return False

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued job has been handed over (or dropped). For tests/shutdown."""
        return self._jobs.flush(timeout_s)

    def close(self) -> None:
        """Refuse new jobs; the thread hands over what is queued, then exits. Never waits."""
        self._jobs.close(wait=False)

    # --- the thread ----------------------------------------------------------------------------

    def _embeddings(self, jobs: list[CaptureJob]) -> dict[int, dict[str, float]]:
        """Embeddings of the sampled ``jobs``' inputs, by position in ``jobs``."""
        embedder, rate = self._embedder, self.embedding_sample_rate
        if embedder is None or rate <= 0.0 or not embedder.available:
            return {}
        picked = [i for i in range(len(jobs)) if self._embedding_rng() < rate]
        if not picked:
            return {}
        try:
            rows = embedder.rows([jobs[i].value for i in picked])
        except Exception as e:  # rows without an embedding are still rows
            self._warn(f"embedding failed for {len(picked)} requests: {e!r}")
            return {}
        with self._lock:
            self.embedded_jobs += len(picked)
        return dict(zip(picked, rows, strict=True))

    def _capture(self, jobs: list[CaptureJob], _attempt: int) -> list[CaptureJob]:
        # A capture that fell behind (a saturated node) skips what is too old to matter and
        # catches up with the traffic, instead of serving windows minutes-old rows.
        fresh_after = self._clock() - self.max_age_s
        stale = sum(len(job.nodes) for job in jobs if job.ts < fresh_after)
        if stale:
            with self._lock:
                self.dropped_rows += stale
                self.stale_rows += stale
            jobs = [job for job in jobs if job.ts >= fresh_after]
        firsts: dict[str, int] = {}  # request id -> its first job, for those not seen yet
        for i, job in enumerate(jobs):
            if job.request_id not in self._inputs:
                firsts.setdefault(job.request_id, i)
        order = list(firsts.values())
        embedded = self._embeddings([jobs[i] for i in order])
        embedding_of = {jobs[order[j]].request_id: e for j, e in embedded.items()}
        rows: list[dict[str, Any]] = []
        for job in jobs:
            try:
                known = self._inputs.get(job.request_id)
                if known is None:
                    known = (input_row(job.value), embedding_of.get(job.request_id))
                    self._remember(job.request_id, *known)
                inputs, embedding = known
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
        return []  # nothing is retried: a batch the monitor did not take is counted as dropped

    def _remember(
        self, request_id: str, inputs: dict[str, float], embedding: dict[str, float] | None
    ) -> None:
        self._inputs[request_id] = (inputs, embedding)
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
