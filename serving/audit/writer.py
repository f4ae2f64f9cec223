"""Writes audit records off the request path, in batches, from background threads.

``submit`` only appends to a bounded in-memory queue (:class:`serving.flusher.BackgroundFlusher`):
no I/O, no waiting on the database, no exception. An audit database that is slow or down must
never slow down or fail a request, so when the queue is full the record is dropped and counted
(``dropped``) instead. A batch that fails to write is kept and retried with backoff; writes are
idempotent, so a retry after a commit whose acknowledgement was lost adds nothing twice.

Request bodies (``store_inputs``) go through a second queue and thread, bounded by bytes: they
are best effort, and a slow disk for megabytes of bodies must not hold up the records.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from serving.audit.records import AdminRecord, AuditSpec, RequestRecord
from serving.audit.store import InputStore
from serving.flusher import BackgroundFlusher

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
        self.max_pending = max_pending
        self._max_input_bytes = max_pending_input_bytes
        self.written = 0
        self.failed_batches = 0
        self._lost = 0  # records that can never be written, and bodies not kept
        self._lock = threading.Lock()  # the counters above and the body bookkeeping below
        self._last_warning = -WARN_EVERY_S
        self._silenced = 0
        self._records: BackgroundFlusher[Record] = BackgroundFlusher(
            self._write,
            max_pending=max_pending,
            batch_size=batch_size,
            flush_interval_s=flush_interval_s,
            max_backoff_s=MAX_BACKOFF_S,
            name="audit-writer",
        )
        # Bodies are bounded by bytes here; the count bound (one body per queued record at
        # most) only keeps a flood of empty bodies finite.
        self._bodies: BackgroundFlusher[tuple[str, bytes]] | None = None
        if inputs is not None:
            self._bodies = BackgroundFlusher(
                self._write_inputs,
                max_pending=max_pending,
                batch_size=batch_size,
                flush_interval_s=flush_interval_s,
                name="audit-inputs",
            )
        self._queued_bodies: set[str] = set()  # queued and not yet taken by the thread
        self._input_bytes = 0

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
        return self._records.submit(record)

    def submit_input(self, sha: str, data: bytes) -> bool:
        """Queue a request body to keep under its sha256; False when not kept."""
        if self._bodies is None:
            return False
        with self._lock:
            if sha in self._queued_bodies:
                return True
            if self._input_bytes + len(data) > self._max_input_bytes:
                self._lost += 1
                return False
            if not self._bodies.submit((sha, data)):  # closed (or absurdly many bodies)
                return False
            self._queued_bodies.add(sha)
            self._input_bytes += len(data)
            return True

    @property
    def dropped(self) -> int:
        """Records and bodies refused, given up on, or that could not be written."""
        refused = self._records.dropped + (self._bodies.dropped if self._bodies else 0)
        with self._lock:
            return refused + self._lost

    @property
    def pending(self) -> int:
        """Records waiting in the queue or for a retry (not counting a batch being written)."""
        return self._records.pending

    def counters(self) -> dict[str, int]:
        dropped = self.dropped
        with self._lock:
            written, failed = self.written, self.failed_batches
        return {
            "written": written,
            "dropped": dropped,
            "failed_batches": failed,
            "pending": self.pending,
        }

    # --- shutdown --------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything accepted so far is written (or given up on); False on timeout."""
        deadline = time.monotonic() + timeout
        if self._bodies is not None:
            self._bodies.flush(0)  # start the bodies now; wait for them after the records
        flushed = self._records.flush(timeout)
        if self._bodies is not None:
            flushed = self._bodies.flush(max(0.0, deadline - time.monotonic())) and flushed
        return flushed

    def close(self, timeout: float = 10.0) -> bool:
        """Flush, then stop the threads; later submits are dropped. False if records were left."""
        deadline = time.monotonic() + timeout
        flushers = [f for f in (self._records, self._bodies) if f is not None]
        for f in flushers:
            f.close(wait=False)  # refuse new items everywhere before waiting on any
        results = [f.close(max(0.0, deadline - time.monotonic())) for f in flushers]
        return all(results)

    # --- the writer threads ----------------------------------------------------------------

    def _write(self, batch: list[Record], attempt: int) -> list[Record]:
        """Write ``batch``; the records to try again (empty when all went in or were given up)."""
        try:
            self._write_all(batch)
        except Exception as e:
            with self._lock:
                self.failed_batches += 1
            self._warn("audit: writing %d records failed (attempt %d): %r", len(batch), attempt, e)
            if attempt < ISOLATE_AFTER or len(batch) == 1:
                return batch
            return self._isolate(batch)
        with self._lock:
            self.written += len(batch)
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
        with self._lock:
            self.written += len(batch) - len(failed)
            self._lost += len(failed)
        return []

    def _write_all(self, batch: list[Record]) -> None:
        requests = [r for r in batch if isinstance(r, RequestRecord)]
        admin = [r for r in batch if isinstance(r, AdminRecord)]
        if requests:
            self._store.write_requests(requests)
        if admin:
            self._store.write_admin(admin)

    def _write_inputs(self, bodies: list[tuple[str, bytes]], _attempt: int) -> list[Any]:
        # Bodies are best effort: one that cannot be written is dropped (its record still names
        # the sha256), since holding megabytes for a retry would crowd out newer bodies.
        with self._lock:
            for sha, data in bodies:
                self._queued_bodies.discard(sha)
                self._input_bytes -= len(data)
        assert self._inputs is not None  # this queue exists only with an input store
        failed = 0
        for sha, data in bodies:
            try:
                self._inputs.put(sha, data)
            except Exception as e:
                failed += 1
                self._warn("audit: storing input %s failed: %r", sha, e)
        with self._lock:
            self._lost += failed
        return []

    def _warn(self, msg: str, *args: Any) -> None:
        # Both threads warn; while the database is down every batch fails, so rate-limit.
        now = time.monotonic()
        with self._lock:
            if now - self._last_warning < WARN_EVERY_S:
                self._silenced += 1
                return
            if self._silenced:
                msg += " (%d similar warnings silenced)"
                args = (*args, self._silenced)
            self._last_warning, self._silenced = now, 0
        log.warning(msg, *args)
