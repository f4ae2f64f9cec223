"""The batched writer: never blocks submit, retries, isolates unwritable records, keeps bodies."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from serving.audit import (
    AdminRecord,
    AuditSpec,
    AuditStore,
    AuditWriter,
    InputStore,
    RequestRecord,
    sha256_hex,
)
from tests.unit.serving.audit.samples import T0
from tests.unit.serving.audit.samples import admin_record as _admin
from tests.unit.serving.audit.samples import request_record as _req


class BlockingStore:
    """Wraps a store; every write waits for ``release`` (an audit database that hangs)."""

    def __init__(self, inner: AuditStore, fail_once: bool = False) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_once = fail_once

    def write_requests(self, records: list[RequestRecord]) -> int:
        self.entered.set()
        self.release.wait()
        if self.fail_once:
            self.fail_once = False
            raise OSError("database is locked")
        return self.inner.write_requests(records)

    def write_admin(self, records: list[AdminRecord]) -> int:
        return self.inner.write_admin(records)


class FlakyStore:
    """Wraps a store; the first ``failures`` writes, or any with a record in ``poison``, raise."""

    def __init__(self, inner: AuditStore, failures: int = 0, poison: str | None = None) -> None:
        self.inner, self.failures, self.poison, self.calls = inner, failures, poison, 0

    def write_requests(self, records: list[RequestRecord]) -> int:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise OSError("disk I/O error")
        if any(r.request_id == self.poison for r in records):
            raise ValueError("cannot store this record")
        return self.inner.write_requests(records)

    def write_admin(self, records: list[AdminRecord]) -> int:
        return self.inner.write_admin(records)


def _stored(store: AuditStore) -> set[str]:
    return {r["request_id"] for r in store.query_requests(limit=10_000)}


def test_writer_writes_everything_submitted(store: AuditStore) -> None:
    writer = AuditWriter(store, batch_size=64, flush_interval_s=0.05)
    assert all(writer.submit(_req(f"r{i}", T0 + i)) for i in range(500))
    assert writer.submit(_admin("rollout.start", T0))
    assert writer.flush(timeout=10)
    assert _stored(store) == {f"r{i}" for i in range(500)}
    assert len(store.query_admin()) == 1
    assert writer.counters() == {"written": 501, "dropped": 0, "failed_batches": 0, "pending": 0}
    assert writer.close()
    assert writer.submit(_req("late")) is False and writer.dropped == 1


def test_writer_flushes_on_its_own(store: AuditStore) -> None:
    writer = AuditWriter(store, batch_size=200, flush_interval_s=0.02)
    for i in range(3):
        writer.submit(_req(f"r{i}"))
    deadline = time.monotonic() + 5
    while _stored(store) != {"r0", "r1", "r2"} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _stored(store) == {"r0", "r1", "r2"}
    writer.close()


def test_a_hung_database_never_blocks_submit(store: AuditStore) -> None:
    blocking = BlockingStore(store)
    writer = AuditWriter(blocking, batch_size=5, max_pending=10, flush_interval_s=0.01)
    writer.submit(_req("first"))
    assert blocking.entered.wait(5)  # the writer thread is now stuck inside the database
    most_pending = 0
    submitted = threading.Event()

    def submit_all() -> None:
        nonlocal most_pending
        for i in range(1000):
            writer.submit(_req(f"r{i}"))
            most_pending = max(most_pending, writer.pending)
        submitted.set()

    # In a thread, so a submit that waits on the hung database fails the test, not hangs it.
    threading.Thread(target=submit_all, daemon=True).start()
    assert submitted.wait(30), "submit waited on the hung database"
    assert most_pending == 10
    assert writer.dropped == 990
    assert writer.flush(timeout=0.05) is False  # still hung
    blocking.release.set()
    assert writer.flush(timeout=10)
    assert _stored(store) == {"first"} | {f"r{i}" for i in range(10)}
    assert (writer.written, writer.dropped) == (11, 990)
    writer.close()


def test_a_failed_batch_is_retried_without_losing_records(store: AuditStore) -> None:
    flaky = FlakyStore(store, failures=1)
    writer = AuditWriter(flaky, batch_size=20, flush_interval_s=0.01)
    for i in range(50):
        writer.submit(_req(f"r{i}"))
    assert writer.flush(timeout=10)
    assert _stored(store) == {f"r{i}" for i in range(50)}
    assert (writer.written, writer.dropped, writer.failed_batches) == (50, 0, 1)
    writer.close()


def test_records_failing_during_an_outage_give_way_to_newer_ones(store: AuditStore) -> None:
    blocking = BlockingStore(store, fail_once=True)
    writer = AuditWriter(blocking, batch_size=5, max_pending=10, flush_interval_s=0.01)
    for i in range(5):
        writer.submit(_req(f"old{i}"))
    assert blocking.entered.wait(5)
    for i in range(12):
        writer.submit(_req(f"new{i}"))
    blocking.release.set()  # the old batch fails; the queue is full, so the old batch goes
    assert writer.flush(timeout=10)
    assert _stored(store) == {f"new{i}" for i in range(10)}
    assert (writer.written, writer.dropped, writer.failed_batches) == (10, 2 + 5, 1)
    writer.close()


def test_a_record_that_can_never_be_written_does_not_block_the_rest(store: AuditStore) -> None:
    flaky = FlakyStore(store, poison="r3")
    writer = AuditWriter(flaky, batch_size=10, flush_interval_s=0.01)
    for i in range(10):
        writer.submit(_req(f"r{i}"))
    assert writer.flush(timeout=10)
    assert _stored(store) == {f"r{i}" for i in range(10)} - {"r3"}
    assert (writer.written, writer.dropped, writer.failed_batches) == (9, 1, 3)
    writer.close()


def test_writer_stores_inputs_once(tmp_path: Path, store: AuditStore) -> None:
    inputs = InputStore(tmp_path / "bodies")
    spec = AuditSpec(store_inputs=True, flush_interval_s=0.01, batch_size=10, max_pending=100)
    writer = AuditWriter.from_spec(spec, store, inputs)
    sha = sha256_hex(b"frame")
    assert writer.submit_input(sha, b"frame")
    assert writer.submit_input(sha, b"frame")
    assert writer.submit(_req("r1"))
    assert writer.flush(timeout=10)
    assert inputs.get(sha) == b"frame"
    assert [p.name for p in (tmp_path / "bodies").rglob("*") if p.is_file()] == [sha]
    assert writer.dropped == 0
    writer.close()

    off = AuditWriter.from_spec(AuditSpec(), store, inputs)
    assert off.submit_input(sha256_hex(b"x"), b"x") is False
    assert off.flush(timeout=1) and inputs.get(sha256_hex(b"x")) is None
    off.close()
