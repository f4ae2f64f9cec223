"""The writer when things go wrong: bad records, outages, warnings, flush and close limits."""

from __future__ import annotations

import itertools
import logging
import threading
from pathlib import Path

import pytest

import serving.audit.writer as writer_module
from serving.audit import AuditStore, AuditWriter, InputStore, sha256_hex
from tests.unit.serving.audit.fakes import FakeClock, HeldInputs, Sink, returns_within, until
from tests.unit.serving.audit.samples import request_record as _req

LOGGER = "serving.audit.writer"


def _stored(store: AuditStore) -> set[str]:
    return {r["request_id"] for r in store.query_requests(limit=10_000)}


def _logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


# --- records that fail -----------------------------------------------------------------------


def test_unwritable_records_are_dropped_and_the_rest_of_their_batch_kept(
    store: AuditStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)
    sink = Sink(store, gated=True, poison={"p1", "p2"})
    writer = AuditWriter(sink, batch_size=2, flush_interval_s=0.01)
    writer.submit(_req("r0"))
    assert sink.entered.wait(10)  # r0 is in the database: the rest queue behind it, in pairs
    for rid in ("a", "p1", "b", "p2"):
        writer.submit(_req(rid))
    sink.release.set()
    assert writer.flush(timeout=10)
    # Each pair fails three times, then goes in one record at a time: the good one is kept.
    assert _stored(store) == {"r0", "a", "b"}
    assert writer.counters() == {"written": 3, "dropped": 2, "failed_batches": 6, "pending": 0}
    assert (
        _logged(caplog, logging.ERROR) == ["audit: dropping 1 records that cannot be written"] * 2
    )
    assert writer.close()


def test_a_batch_of_which_nothing_goes_in_is_kept_for_the_database_to_come_back(
    store: AuditStore,
) -> None:
    # Calls 2-6 fail: the pair's three attempts, then each record of it alone. As not one
    # record went in, the database is down rather than the records bad: nothing is dropped.
    sink = Sink(store, gated=True, fail_calls=range(2, 7))
    writer = AuditWriter(sink, batch_size=2, flush_interval_s=0.01)
    writer.submit(_req("r0"))
    assert sink.entered.wait(10)
    writer.submit(_req("a"))
    writer.submit(_req("b"))
    sink.release.set()
    assert writer.flush(timeout=10)
    assert _stored(store) == {"r0", "a", "b"}
    assert writer.counters() == {"written": 3, "dropped": 0, "failed_batches": 3, "pending": 0}
    assert sink.calls == 7
    assert writer.close()


# --- warnings --------------------------------------------------------------------------------


def test_a_failed_write_warns_with_its_size_attempt_and_error(
    store: AuditStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    writer = AuditWriter(Sink(store, fail_calls={1}), flush_interval_s=0.01)
    writer.submit(_req("r1"))
    assert writer.flush(timeout=10)
    assert _logged(caplog, logging.WARNING) == [
        "audit: writing 1 records failed (attempt 1): OSError('disk I/O error')"
    ]
    assert (writer.written, writer.failed_batches) == (1, 1)
    assert writer.close()


def test_warnings_are_rate_limited_and_say_how_many_were_silenced(
    tmp_path: Path,
    store: AuditStore,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock(0.0)  # the first warning goes out, whatever the monotonic clock reads
    monkeypatch.setattr(writer_module, "time", clock)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    inputs = InputStore(tmp_path / "bodies")
    writer = AuditWriter(store, inputs=inputs, batch_size=10, flush_interval_s=60)
    corrupt = b"corrupt"  # bytes that hash to none of the digests below: every put fails

    def sha(name: str) -> str:
        return sha256_hex(name.encode())

    def fail(at: float, *names: str) -> None:
        clock.now = at
        for name in names:
            assert writer.submit_input(sha(name), corrupt)
        assert writer.flush(timeout=10)

    def warning(name: str) -> str:
        error = ValueError(f"data of 7 bytes does not hash to {sha(name)!r}")
        return f"audit: storing input {sha(name)} failed: {error!r}"

    fail(0.0, "a", "b")  # one batch: a warns, b is silenced
    fail(29.5, "c")  # still within 30 s of the last warning
    fail(30.0, "d")  # 30 s on: warns, and says how many were silenced
    fail(30.0, "e")
    fail(60.0, "f")
    fail(100.0, "g")  # none silenced since f: no count
    assert _logged(caplog, logging.WARNING) == [
        warning("a"),
        warning("d") + " (2 similar warnings silenced)",
        warning("f") + " (1 similar warnings silenced)",
        warning("g"),
    ]
    assert writer.dropped == 7  # a body that cannot be stored is given up, not retried
    assert inputs.get(sha("a")) is None
    assert writer.close()


# --- flush and close limits ------------------------------------------------------------------


def test_flush_waits_for_a_body_still_being_written_when_the_records_are_in(
    tmp_path: Path, store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = HeldInputs(tmp_path / "bodies")
    clock = FakeClock(100.0)

    # flush reads the clock to set its deadline, then again once the records are in: the body
    # finishes only then, so flush must wait for it with the time it has left.
    clock.set_after_the_first_reading(inputs.release)
    monkeypatch.setattr(writer_module, "time", clock)
    writer = AuditWriter(store, inputs=inputs, flush_interval_s=60)
    sha = sha256_hex(b"frame")
    assert writer.submit(_req("r1"))
    assert writer.submit_input(sha, b"frame")
    assert writer.flush(timeout=10)
    assert inputs.get(sha) == b"frame"
    assert _stored(store) == {"r1"}
    assert writer.close()


def test_flush_gives_up_at_its_timeout_on_a_body_that_hangs(
    tmp_path: Path, store: AuditStore
) -> None:
    inputs = HeldInputs(tmp_path / "bodies")
    writer = AuditWriter(store, inputs=inputs, flush_interval_s=60)
    sha = sha256_hex(b"frame")
    writer.submit_input(sha, b"frame")
    try:
        assert returns_within(lambda: writer.flush(timeout=0.2)) is False
    finally:
        inputs.release.set()
    assert writer.close()
    assert inputs.get(sha) == b"frame"


def test_flush_is_false_while_records_hang_even_when_the_bodies_went_in(
    tmp_path: Path, store: AuditStore
) -> None:
    sink = Sink(store, gated=True)
    inputs = InputStore(tmp_path / "bodies")
    writer = AuditWriter(sink, inputs=inputs, flush_interval_s=60)
    sha = sha256_hex(b"frame")
    writer.submit(_req("r1"))
    writer.submit_input(sha, b"frame")
    try:
        assert returns_within(lambda: writer.flush(timeout=0.2)) is False
    finally:
        sink.release.set()
    assert writer.close()
    assert inputs.get(sha) == b"frame"
    assert _stored(store) == {"r1"}


def test_close_waits_for_records_still_being_written(
    store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = Sink(store, gated=True)
    clock = FakeClock(100.0)

    # close reads the clock for its deadline, then for each queue's share of it: the database
    # answers only then, so close must wait for it.
    clock.set_after_the_first_reading(sink.release)
    monkeypatch.setattr(writer_module, "time", clock)
    writer = AuditWriter(sink, flush_interval_s=60)
    for i in range(3):
        writer.submit(_req(f"r{i}"))
    assert writer.close(timeout=10)
    assert _stored(store) == {"r0", "r1", "r2"}
    assert writer.dropped == 0


def test_close_gives_up_at_its_timeout_on_a_database_that_hangs(store: AuditStore) -> None:
    sink = Sink(store, gated=True)
    writer = AuditWriter(sink, flush_interval_s=60)
    writer.submit(_req("r1"))
    try:
        assert returns_within(lambda: writer.close(timeout=0.2)) is False
    finally:
        sink.release.set()
    assert writer.submit(_req("late")) is False


def test_close_refuses_new_bodies_at_once_while_it_waits_on_the_records(
    tmp_path: Path, store: AuditStore
) -> None:
    sink = Sink(store, gated=True)
    writer = AuditWriter(sink, inputs=InputStore(tmp_path / "bodies"), flush_interval_s=60)
    writer.submit(_req("r1"))
    closed: list[bool] = []
    closer = threading.Thread(target=lambda: closed.append(writer.close(timeout=30)), daemon=True)
    closer.start()
    n = itertools.count()

    def a_new_body_is_refused() -> bool:
        data = f"body {next(n)}".encode()
        return not writer.submit_input(sha256_hex(data), data)

    try:
        assert until(a_new_body_is_refused), "bodies still taken while close waits on the records"
    finally:
        sink.release.set()
    closer.join(10)
    assert closed == [True]
    assert _stored(store) == {"r1"}
