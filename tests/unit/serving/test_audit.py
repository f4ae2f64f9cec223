from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from serving.audit import (
    AdminRecord,
    AuditSpec,
    AuditStore,
    InputStore,
    RequestRecord,
    node_entry,
    open_store,
    sha256_hex,
    sticky_key_hash,
)
from serving.audit_writer import AuditWriter
from serving.errors import BadRequest

T0 = 1_700_000_000.0
DAY = 86_400.0


def _req(
    rid: str,
    ts: float = T0,
    models: dict[str, int] | None = None,
    caller: str = "alice",
    error_code: str | None = None,
) -> RequestRecord:
    models = {"detector": 3} if models is None else models
    return RequestRecord(
        request_id=rid,
        ts=ts,
        caller=caller,
        route="pipeline:inspect",
        pipeline="inspect",
        nodes={m: node_entry(v, "champion", 0.0) for m, v in models.items()},
        output_summary={"detections": 1},
        latency_ms=12.5,
        status=200 if error_code is None else 502,
        error_code=error_code,
    )


def _admin(action: str, ts: float, actor: str = "ops") -> AdminRecord:
    return AdminRecord(ts=ts, actor=actor, action=action, target="ro-1", detail={"weight": 10})


def _ids(rows: list[dict[str, object]]) -> list[object]:
    return [r.get("request_id", r.get("action")) for r in rows]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    s = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}", inputs=InputStore(tmp_path / "inputs"))
    yield s
    s.close()


# --- helpers and config ----------------------------------------------------------------------


def test_sticky_key_hash_never_keeps_the_raw_key() -> None:
    digest = sticky_key_hash("10.0.0.7")
    assert digest == hashlib.sha256(b"10.0.0.7").hexdigest()[:16]
    assert sticky_key_hash(None) is None
    entry = node_entry(3, "challenger", 25.0, sticky_key="camera-42", pinned=False)
    assert entry["sticky_key_hash"] == sticky_key_hash("camera-42")
    assert "camera-42" not in repr(entry)
    assert sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()


def test_spec_defaults_and_bounds() -> None:
    spec = AuditSpec()
    assert (spec.enabled, spec.database_url, spec.retention_days) == (True, None, 30)
    assert (spec.batch_size, spec.flush_interval_s, spec.max_pending) == (200, 0.5, 10_000)
    with pytest.raises(ValidationError, match="retention_days"):
        AuditSpec(retention_days=0)
    with pytest.raises(ValidationError, match="Extra inputs"):
        AuditSpec.model_validate({"retain_days": 3})
    with pytest.raises(ValidationError, match=r"batch_size \(50\) > max_pending \(10\)"):
        AuditSpec(batch_size=50, max_pending=10)


def test_open_store_defaults_to_a_wal_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    s = open_store(AuditSpec(), tmp_path)
    s.write_requests([_req("r1")])
    s.close()
    assert (tmp_path / "audit.db").is_file()
    db = sqlite3.connect(tmp_path / "audit.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    other = open_store(AuditSpec(database_url=f"sqlite:///{tmp_path / 'x.db'}"), tmp_path)
    assert other.url.endswith("x.db")
    other.close()


# --- the store -------------------------------------------------------------------------------


def test_round_trip_keeps_nodes_and_summary(store: AuditStore) -> None:
    record = RequestRecord(
        request_id="r1",
        ts=T0,
        caller="key:ci",
        route="pipeline:inspect",
        pipeline="inspect",
        input_sha256=sha256_hex(b"img"),
        input_bytes=3,
        nodes={
            "detector": node_entry(3, "challenger", 25.0, sticky_key="cam-1", fallback=True),
            "ocr": node_entry(1, "champion", 0.0, pinned=True, shadowed=True),
        },
        output_summary={"detections": 2, "text": "RETURN 12345"},
        latency_ms=41.5,
        status=200,
    )
    assert store.write_requests([record]) == 1
    assert store.get_request("r1") == record.to_dict()
    got = store.get_request("r1")
    assert got is not None and got["nodes"]["detector"]["fallback"] is True
    assert got["nodes"]["ocr"] == {
        "version": 1,
        "arm": "champion",
        "weight": 0.0,
        "sticky_key_hash": None,
        "pinned": True,
        "shadowed": True,
        "fallback": False,
    }
    assert store.get_request("nope") is None


def test_a_retried_batch_adds_nothing(store: AuditStore, tmp_path: Path) -> None:
    assert store.write_requests([_req("r1"), _req("r2")]) == 2
    # The retry carries r1 again (and a changed copy): the first write wins, nothing doubles.
    assert store.write_requests([_req("r1", caller="mallory"), _req("r3")]) == 1
    assert store.write_requests([_req("r4"), _req("r4")]) == 1
    assert store.write_requests([]) == 0
    assert store.get_request("r1")["caller"] == "alice"  # type: ignore[index]
    db = sqlite3.connect(tmp_path / "audit.db")
    assert db.execute("SELECT count(*) FROM audit_requests WHERE request_id='r1'").fetchone() == (
        1,
    )
    assert db.execute("SELECT count(*) FROM audit_request_models").fetchone() == (4,)
    db.close()


def test_query_by_model_and_version_newest_first(store: AuditStore) -> None:
    store.write_requests(
        [
            _req("a", T0 + 1, {"detector": 3, "ocr": 1}),
            _req("b", T0 + 2, {"detector": 2, "ocr": 1}),
            _req("c", T0 + 3, {"detector": 3}),
            _req("d", T0 + 4, {"ocr": 2}),
            _req("e", T0 + 5, {"detector": 3}),
        ]
    )
    assert _ids(store.query_requests(model="detector", version=3)) == ["e", "c", "a"]
    assert _ids(store.query_requests(model="detector", version=3, since=T0 + 3)) == ["e", "c"]
    assert _ids(store.query_requests(model="detector", version=3, until=T0 + 5)) == ["c", "a"]
    assert _ids(store.query_requests(model="detector")) == ["e", "c", "b", "a"]
    assert _ids(store.query_requests(model="ocr", version=1, limit=1)) == ["b"]
    assert _ids(store.query_requests(model="classifier")) == []
    assert _ids(store.query_requests()) == ["e", "d", "c", "b", "a"]
    assert _ids(store.query_requests(since=T0 + 4)) == ["e", "d"]


def test_query_by_caller_and_error_code(store: AuditStore) -> None:
    store.write_requests(
        [
            _req("a", T0 + 1, caller="bob"),
            _req("b", T0 + 2, caller="bob", error_code="model_failure"),
            _req("c", T0 + 3, error_code="model_failure"),
        ]
    )
    assert _ids(store.query_requests(caller="bob")) == ["b", "a"]
    assert _ids(store.query_requests(error_code="model_failure")) == ["c", "b"]
    assert _ids(store.query_requests(caller="bob", error_code="model_failure")) == ["b"]


def test_bad_queries_are_refused_with_the_value(store: AuditStore) -> None:
    with pytest.raises(BadRequest, match="version 3 given without a model"):
        store.query_requests(version=3)
    with pytest.raises(BadRequest, match="got 0"):
        store.query_requests(limit=0)
    with pytest.raises(BadRequest, match="got 0"):
        store.purge(0)


def test_admin_records_and_query(store: AuditStore) -> None:
    records = [
        _admin("rollout.start", T0 + 1),
        _admin("rollout.promote", T0 + 2),
        _admin("keys.add", T0 + 3, actor="root"),
        _admin("rollout.abort", T0 + 4),
    ]
    assert store.write_admin(records) == 4
    assert store.write_admin(records[:2]) == 0  # a retry adds nothing
    rows = store.query_admin()
    assert _ids(rows) == ["rollout.abort", "keys.add", "rollout.promote", "rollout.start"]
    assert rows[0] == records[3].to_dict()
    assert _ids(store.query_admin(actor="ops", since=T0 + 2)) == [
        "rollout.abort",
        "rollout.promote",
    ]
    assert _ids(store.query_admin(action="keys.add")) == ["keys.add"]
    assert _ids(store.query_admin(limit=1)) == ["rollout.abort"]


def test_purge_deletes_only_what_is_older_than_the_cutoff(tmp_path: Path) -> None:
    now = time.time()
    inputs = InputStore(tmp_path / "inputs")
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}", inputs=inputs)
    store.write_requests(
        [
            _req("old", now - 40 * DAY, {"detector": 3, "ocr": 1}),
            _req("new", now - 10 * DAY, {"detector": 3}),
        ]
    )
    store.write_admin([_admin("rollout.start", now - 31 * DAY), _admin("keys.add", now - DAY)])
    old_sha, new_sha = sha256_hex(b"old body"), sha256_hex(b"new body")
    inputs.put(old_sha, b"old body")
    inputs.put(new_sha, b"new body")
    os.utime(inputs.path(old_sha), (now - 40 * DAY, now - 40 * DAY))
    os.utime(inputs.path(new_sha), (now - 10 * DAY, now - 10 * DAY))

    counts = store.purge(30, now=now)

    assert counts == {"request_models": 2, "requests": 1, "admin": 1, "inputs": 1}
    assert store.get_request("old") is None and store.get_request("new") is not None
    assert _ids(store.query_requests(model="ocr")) == []
    assert _ids(store.query_admin()) == ["keys.add"]
    assert inputs.get(old_sha) is None and inputs.get(new_sha) == b"new body"
    assert store.purge(30, now=now) == {"request_models": 0, "requests": 0, "admin": 0, "inputs": 0}
    store.close()


def test_two_stores_on_one_file_both_write(tmp_path: Path) -> None:
    # Two ingress replicas: separate engines (connections) on one SQLite file, concurrently.
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    replicas = [AuditStore(url), AuditStore(url)]
    errors: list[BaseException] = []

    def write(n: int, store: AuditStore) -> None:
        try:
            for b in range(30):
                store.write_requests([_req(f"{n}-{b}-{i}", T0 + b) for i in range(10)])
                store.write_admin([_admin(f"a.{n}", T0 + b)])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(n, s)) for n, s in enumerate(replicas)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(replicas[0].query_requests(limit=10_000)) == 600
    assert len(replicas[1].query_admin(limit=10_000)) == 60
    for s in replicas:
        s.close()


def test_inputs_are_content_addressed_and_written_once(tmp_path: Path) -> None:
    inputs = InputStore(tmp_path / "inputs")
    sha = sha256_hex(b"jpeg bytes")
    assert inputs.put(sha, b"jpeg bytes") is True
    assert inputs.path(sha) == tmp_path / "inputs" / sha[:2] / sha
    os.utime(inputs.path(sha), (T0, T0))
    assert inputs.put(sha, b"jpeg bytes") is False
    assert inputs.path(sha).stat().st_mtime > T0  # seen again: retention restarts
    assert inputs.get(sha) == b"jpeg bytes"
    assert [p.name for p in (tmp_path / "inputs").rglob("*") if p.is_file()] == [sha]
    with pytest.raises(ValueError, match="does not hash to"):
        inputs.put(sha, b"other bytes")
    with pytest.raises(ValueError, match=r"'\.\./etc'"):
        inputs.path("../etc")


# --- the writer ------------------------------------------------------------------------------


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
    most_pending, slowest = 0, 0.0
    for i in range(1000):
        start = time.perf_counter()
        writer.submit(_req(f"r{i}"))
        slowest = max(slowest, time.perf_counter() - start)
        most_pending = max(most_pending, writer.pending)
    assert most_pending == 10
    assert slowest < 0.05
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
    writer.close()

    off = AuditWriter.from_spec(AuditSpec(), store, inputs)
    assert off.submit_input(sha256_hex(b"x"), b"x") is False
    assert off.flush(timeout=1) and inputs.get(sha256_hex(b"x")) is None
    off.close()
