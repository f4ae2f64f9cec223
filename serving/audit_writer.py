"""Writes audit records off the request path, in batches, from one background thread.

``submit`` only appends to a bounded in-memory queue: no I/O, no waiting on the database, no
exception. An audit database that is slow or down must never slow down or fail a request, so
when the queue is full the record is dropped and counted (``dropped``) instead. A batch that
fails to write is kept and retried with backoff; writes are idempotent, so a retry after a
commit whose acknowledgement was lost adds nothing twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Protocol

from serving.audit import AdminRecord, AuditSpec, InputStore, RequestRecord

log = logging.getLogger(__name__)

Record = RequestRecord | AdminRecord

WARN_EVERY_S = 30.0  # at most one warning per this many seconds while writes keep failing
MAX_BACKOFF_S = 5.0
ISOLATE_AFTER = 3  # failures of one batch before looking for a record that can never be written


class RecordSink(Protocol):
    def write_requests(self, records: list[RequestRecord]) -> int: ...
    def write_admin(self, records: list[AdminRecord]) -> int: ...


class AuditWriter:
    """Batches records into ``store``; counters ``written``, ``dropped``, ``failed_batches``."""

    def __init__(
        self,
        store: RecordSink,
        *,
        batch_size: int = 200,
        flush_interval_s: float = 0.5,
        max_pending: int = 10_000,
        inputs: InputStore | None = None,
        max_pending_input_bytes: int = 256 * 2**20,
    ) -> None:
        if batch_size < 1 or max_pending < 1 or not flush_interval_s > 0:
            raise ValueError(
                f"need batch_size >= 1, max_pending >= 1, flush_interval_s > 0; got "
                f"{batch_size!r}, {max_pending!r}, {flush_interval_s!r}"
            )
        self._store = store
        self._inputs = inputs
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self.max_pending = max_pending
        self._max_input_bytes = max_pending_input_bytes
        self.written = 0
        self.dropped = 0
        self.failed_batches = 0
        self._queue: deque[Record] = deque()
        self._retry: list[Record] = []  # the batch that failed last, written before the queue
        self._retry_attempts = 0
        self._input_queue: dict[str, bytes] = {}
        self._input_bytes = 0
        # Every accepted record counts once in _accepted and, when it has been written or given
        # up on, once in _settled. Records settle in the order they were accepted (the retry
        # buffer goes first), so flush() can wait for "everything accepted before the call" by
        # waiting for a number. Bodies, all taken at each round, have their own pair.
        self._accepted = self._settled = 0
        self._inputs_accepted = self._inputs_settled = 0
        self._flush_until = self._flush_inputs_until = 0
        self._stop = False
        self._last_warning = -WARN_EVERY_S
        self._silenced = 0
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    @classmethod
    def from_spec(
        cls, spec: AuditSpec, store: RecordSink, inputs: InputStore | None = None
    ) -> AuditWriter:
        return cls(
            store,
            batch_size=spec.batch_size,
            flush_interval_s=spec.flush_interval_s,
            max_pending=spec.max_pending,
            inputs=inputs if spec.store_inputs else None,
            max_pending_input_bytes=int(spec.max_pending_input_mb * 2**20),
        )

    # --- the request path ------------------------------------------------------------------

    @property
    def store(self) -> Any:
        """The store the writer writes to (reads go straight to it)."""
        return self._store

    def submit(self, record: Record) -> bool:
        """Queue a record; False (and ``dropped`` + 1) when the queue is full or closed."""
        with self._cond:  # held by the writer thread only to move a batch in or out: O(1)
            if self._stop or len(self._queue) + len(self._retry) >= self.max_pending:
                self.dropped += 1
                return False
            self._queue.append(record)
            self._accepted += 1
            if len(self._queue) == self._batch_size:
                self._cond.notify()
            return True

    def submit_input(self, sha: str, data: bytes) -> bool:
        """Queue a request body to keep under its sha256; False when not kept."""
        if self._inputs is None:
            return False
        with self._cond:
            if sha in self._input_queue:
                return True
            if self._stop or self._input_bytes + len(data) > self._max_input_bytes:
                self.dropped += 1
                return False
            self._input_queue[sha] = data
            self._input_bytes += len(data)
            self._inputs_accepted += 1
            return True

    @property
    def pending(self) -> int:
        """Records waiting in the queue or for a retry (not counting a batch being written)."""
        with self._cond:
            return len(self._queue) + len(self._retry)

    def counters(self) -> dict[str, int]:
        with self._cond:
            return {
                "written": self.written,
                "dropped": self.dropped,
                "failed_batches": self.failed_batches,
                "pending": len(self._queue) + len(self._retry),
            }

    # --- shutdown --------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything accepted so far is written (or given up on); False on timeout."""
        with self._cond:
            target, inputs = self._accepted, self._inputs_accepted
            self._flush_until = max(self._flush_until, target)
            self._flush_inputs_until = max(self._flush_inputs_until, inputs)
            self._cond.notify_all()
            return self._cond.wait_for(
                lambda: self._settled >= target and self._inputs_settled >= inputs,
                timeout=timeout,
            )

    def close(self, timeout: float = 10.0) -> bool:
        """Flush, then stop the thread; later submits are dropped. False if records were left."""
        flushed = self.flush(timeout)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=max(timeout, 1.0))
        return flushed

    # --- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.0
        while True:
            with self._cond:
                if backoff:
                    self._cond.wait_for(lambda: self._stop, timeout=backoff)
                else:
                    self._cond.wait_for(self._due, timeout=self._interval)
                if self._stop:
                    return
                batch, attempts = self._retry, self._retry_attempts
                self._retry, self._retry_attempts = [], 0
                if not batch:
                    n = min(self._batch_size, len(self._queue))
                    batch = [self._queue.popleft() for _ in range(n)]
                inputs, self._input_queue, self._input_bytes = self._input_queue, {}, 0
            if inputs:
                self._write_inputs(inputs)
            if not batch:
                backoff = 0.0
                continue
            failed = self._write(batch, attempts + 1)
            if failed:
                with self._cond:
                    self._keep_for_retry(failed, attempts + 1)
            backoff = min(max(2 * backoff, self._interval), MAX_BACKOFF_S) if failed else 0.0

    def _due(self) -> bool:
        return (
            self._stop
            or len(self._queue) >= self._batch_size
            or (self._settled < self._flush_until and bool(self._queue))
            or (self._inputs_settled < self._flush_inputs_until and bool(self._input_queue))
        )

    def _write(self, batch: list[Record], attempt: int) -> list[Record]:
        """Write ``batch``; the records still to write (empty when all went in)."""
        try:
            self._write_all(batch)
        except Exception as e:
            with self._cond:
                self.failed_batches += 1
            self._warn("audit: writing %d records failed (attempt %d): %r", len(batch), attempt, e)
            if attempt < ISOLATE_AFTER or len(batch) == 1:
                return batch
            return self._isolate(batch)
        self._settle(len(batch), written=len(batch))
        return []

    def _isolate(self, batch: list[Record]) -> list[Record]:
        # One by one: if some records go in, the others are unwritable (a bad value) and are
        # dropped so they do not block the trail forever; if none does, the database is down.
        failed = []
        for record in batch:
            try:
                self._write_all([record])
            except Exception:
                failed.append(record)
        if len(failed) == len(batch):
            return batch
        log.error("audit: dropping %d records that cannot be written", len(failed))
        self._settle(len(batch), written=len(batch) - len(failed), dropped=len(failed))
        return []

    def _write_all(self, batch: list[Record]) -> None:
        requests = [r for r in batch if isinstance(r, RequestRecord)]
        admin = [r for r in batch if isinstance(r, AdminRecord)]
        if requests:
            self._store.write_requests(requests)
        if admin:
            self._store.write_admin(admin)

    def _write_inputs(self, inputs: dict[str, bytes]) -> None:
        # Bodies are best effort: one that cannot be written is dropped (its record still names
        # the sha256), since holding megabytes for a retry would crowd out the records.
        failed = 0
        for sha, data in inputs.items():
            try:
                self._inputs.put(sha, data)  # type: ignore[union-attr]
            except Exception as e:
                failed += 1
                self._warn("audit: storing input %s failed: %r", sha, e)
        with self._cond:
            self._inputs_settled += len(inputs)
            self.dropped += failed
            self._cond.notify_all()

    def _keep_for_retry(self, failed: list[Record], attempts: int) -> None:
        # Called with the lock held. Keep the queue plus retry buffer within max_pending by
        # giving up on the oldest records: they are the least useful by the time it recovers.
        excess = min(len(failed), len(failed) + len(self._queue) - self.max_pending)
        if excess > 0:
            failed = failed[excess:]
            self.dropped += excess
            self._settled += excess
            self._cond.notify_all()
        self._retry = failed
        self._retry_attempts = attempts

    def _settle(self, n: int, *, written: int, dropped: int = 0) -> None:
        with self._cond:
            self._settled += n
            self.written += written
            self.dropped += dropped
            self._cond.notify_all()

    def _warn(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_warning < WARN_EVERY_S:
            self._silenced += 1
            return
        if self._silenced:
            msg += " (%d similar warnings silenced)"
            args = (*args, self._silenced)
        self._last_warning, self._silenced = now, 0
        log.warning(msg, *args)
