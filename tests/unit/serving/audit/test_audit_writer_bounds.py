"""The writer's bounds: what it accepts, its defaults, what it takes from the spec, body bytes."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from serving.audit import AuditSpec, AuditStore, AuditWriter, InputStore, sha256_hex
from tests.unit.serving.audit.fakes import Sink
from tests.unit.serving.audit.samples import T0
from tests.unit.serving.audit.samples import request_record as _req


def _stored(store: AuditStore) -> set[str]:
    return {r["request_id"] for r in store.query_requests(limit=10_000)}


# --- construction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounds", "shown"),
    [
        ({"batch_size": 0}, "0, 10000, 0.5"),
        ({"max_pending": 0}, "200, 0, 0.5"),
        ({"flush_interval_s": 0}, "200, 10000, 0"),
        ({"flush_interval_s": -1.0}, "200, 10000, -1.0"),
    ],
)
def test_writer_refuses_bounds_it_could_never_keep(
    store: AuditStore, bounds: dict[str, Any], shown: str
) -> None:
    # The message quotes all three values, the defaults included.
    with pytest.raises(ValueError) as exc:
        AuditWriter(store, **bounds)
    assert str(exc.value) == (
        f"need batch_size >= 1, max_pending >= 1, flush_interval_s > 0; got {shown}"
    )


def test_the_smallest_bounds_work(store: AuditStore) -> None:
    writer = AuditWriter(store, batch_size=1, max_pending=1, flush_interval_s=0.001)
    assert writer.submit(_req("r1"))
    assert writer.flush(timeout=10)
    assert _stored(store) == {"r1"}
    assert writer.close()


def test_by_default_batches_hold_200_records_and_the_queue_10_000() -> None:
    sink = Sink(gated=True)
    writer = AuditWriter(sink, flush_interval_s=60)  # no batch goes for want of time
    record = _req("r")
    for _ in range(200):
        writer.submit(record)  # the 200th fills a batch, which goes at once
    assert sink.entered.wait(10), "a full batch of 200 did not go"
    # With that batch stuck in the database, the queue takes 10 000 more and refuses the next.
    accepted = sum(writer.submit(record) for _ in range(10_001))
    assert (accepted, writer.pending, writer.dropped) == (10_000, 10_000, 1)
    assert writer.max_pending == 10_000
    sink.release.set()
    assert writer.flush(timeout=30)
    assert sink.batches == [200] * 51
    assert writer.close()


def test_the_writer_threads_are_named_for_stack_dumps(tmp_path: Path, store: AuditStore) -> None:
    before = set(threading.enumerate())
    writer = AuditWriter(store, inputs=InputStore(tmp_path / "bodies"), flush_interval_s=60)
    writer.submit(_req("r1"))
    writer.submit_input(sha256_hex(b"frame"), b"frame")
    started = set(threading.enumerate()) - before
    assert sorted(t.name for t in started) == ["audit-inputs", "audit-writer"]
    assert writer.close()


def test_from_spec_takes_every_bound_from_the_spec(tmp_path: Path) -> None:
    spec = AuditSpec(
        batch_size=3,
        max_pending=50,
        flush_interval_s=60,
        store_inputs=True,
        max_pending_input_mb=1,
    )
    sink = Sink()
    inputs = InputStore(tmp_path / "bodies")
    writer = AuditWriter.from_spec(spec, sink, inputs)
    assert writer.store is sink
    assert writer.max_pending == 50
    for i in range(7):
        assert writer.submit(_req(f"r{i}"))
    # 1 MiB of bodies may wait to be written; one byte more may not.
    over, exact = bytes(2**20 + 1), bytes(2**20)
    assert writer.submit_input(sha256_hex(over), over) is False
    assert writer.submit_input(sha256_hex(exact), exact) is True
    assert writer.flush(timeout=10)
    assert sink.batches == [3, 3, 1]  # full batches of 3 went on their own; flush sent the rest
    assert inputs.get(sha256_hex(exact)) == exact
    assert inputs.get(sha256_hex(over)) is None
    assert writer.dropped == 1
    assert writer.close()


# --- request bodies --------------------------------------------------------------------------


def test_bodies_waiting_to_be_written_are_bounded_by_their_bytes(
    tmp_path: Path, store: AuditStore
) -> None:
    inputs = InputStore(tmp_path / "bodies")
    writer = AuditWriter(store, inputs=inputs, flush_interval_s=60, max_pending_input_bytes=10)
    six, four, one, ten = b"123456", b"7890", b"x", b"0123456789"

    def submit(data: bytes) -> bool:
        return writer.submit_input(sha256_hex(data), data)

    assert submit(six) and submit(four)  # 10 bytes waiting: the bound itself
    assert submit(one) is False  # one byte over
    assert submit(one) is False  # and counted each time
    assert submit(six) is True  # already waiting: taken, and no bytes added
    assert writer.dropped == 2
    assert writer.flush(timeout=10)
    assert [inputs.get(sha256_hex(d)) for d in (six, four, one)] == [six, four, None]
    assert writer.dropped == 2  # the bodies that went in count for nothing
    # Bodies written are no longer waiting: the whole bound is free again.
    assert submit(ten)
    assert submit(one) is False
    assert writer.flush(timeout=10)
    assert inputs.get(sha256_hex(ten)) == ten
    assert writer.dropped == 3
    assert writer.close()


def test_a_body_seen_again_after_it_was_stored_restarts_its_retention(
    tmp_path: Path, store: AuditStore
) -> None:
    inputs = InputStore(tmp_path / "bodies")
    writer = AuditWriter(store, inputs=inputs, flush_interval_s=60)
    sha = sha256_hex(b"frame")
    assert writer.submit_input(sha, b"frame")
    assert writer.flush(timeout=10)
    os.utime(inputs.path(sha), (T0, T0))
    assert writer.submit_input(sha, b"frame")  # a later request with the same body
    assert writer.flush(timeout=10)
    assert inputs.path(sha).stat().st_mtime > T0
    assert writer.dropped == 0
    assert writer.close()


def test_bodies_are_refused_and_counted_after_close(tmp_path: Path, store: AuditStore) -> None:
    writer = AuditWriter(store, inputs=InputStore(tmp_path / "bodies"))
    assert writer.close()
    assert writer.submit_input(sha256_hex(b"late"), b"late") is False
    assert writer.dropped == 1
    assert writer.submit_input(sha256_hex(b"later"), b"later") is False
    assert writer.dropped == 2
