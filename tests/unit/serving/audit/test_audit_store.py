"""The SQL audit store and the content-addressed input store, on real SQLite files."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from serving.audit import (
    AuditSpec,
    AuditStore,
    InputStore,
    RequestRecord,
    node_entry,
    open_store,
    sha256_hex,
)
from serving.errors import BadRequest
from tests.unit.serving.audit.samples import DAY, T0
from tests.unit.serving.audit.samples import admin_record as _admin
from tests.unit.serving.audit.samples import ids as _ids
from tests.unit.serving.audit.samples import request_record as _req


def test_open_store_defaults_to_a_wal_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    s = open_store(AuditSpec(), tmp_path)
    s.write_requests([_req("r1")])
    s.close()
    assert (tmp_path / "audit.db").is_file()
    assert s.inputs is not None and s.inputs.root == tmp_path / "audit_inputs"
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


@pytest.mark.parametrize(
    ("query", "message", "details"),
    [
        (lambda s: s.query_requests(version=3), "version 3 given without a model", {"version": 3}),
        (lambda s: s.query_requests(limit=0), "limit must be in 1..10000, got 0", {"limit": 0}),
        (
            lambda s: s.query_requests(limit=10_001),
            "limit must be in 1..10000, got 10001",
            {"limit": 10_001},
        ),
        (lambda s: s.query_admin(limit=0), "limit must be in 1..10000, got 0", {"limit": 0}),
        (lambda s: s.purge(0), "older_than_days must be > 0, got 0", {}),
        (lambda s: s.purge(-1.5), "older_than_days must be > 0, got -1.5", {}),
    ],
    ids=["version-alone", "limit-0", "limit-10001", "admin-limit-0", "purge-0", "purge-negative"],
)
def test_bad_queries_are_refused_with_the_value(
    store: AuditStore,
    query: Callable[[AuditStore], object],
    message: str,
    details: dict[str, object],
) -> None:
    with pytest.raises(BadRequest) as exc:
        query(store)
    assert (exc.value.message, exc.value.details) == (message, details)


def test_the_limit_bounds_themselves_are_allowed(store: AuditStore) -> None:
    store.write_requests([_req("r1")])
    store.write_admin([_admin("keys.add", T0)])
    for limit in (1, 10_000):
        assert _ids(store.query_requests(limit=limit)) == ["r1"]
        assert _ids(store.query_admin(limit=limit)) == ["keys.add"]


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


# --- writes ----------------------------------------------------------------------------------


def test_writes_with_nothing_new_add_no_rows(store: AuditStore) -> None:
    records = [_req("r1"), _req("r2")]
    admin = [_admin("keys.add", T0)]
    assert store.write_requests(records) == 2
    assert store.write_requests(records) == 0
    assert store.write_admin(admin) == 1
    assert store.write_admin(admin) == 0
    assert store.write_admin([]) == 0
    assert len(store.query_requests()) == 2
    assert len(store.query_admin()) == 1


def test_known_ids_are_found_in_every_chunk_of_a_large_batch(store: AuditStore) -> None:
    # Ids are looked up 500 at a time: known ones at both ends of each chunk are all found.
    batch = [_req(f"r{i:04d}", models={}) for i in range(1201)]
    known = [0, 499, 500, 999, 1000, 1200]
    assert store.write_requests([batch[i] for i in known]) == len(known)
    assert store.write_requests(batch) == 1201 - len(known)
    assert len(store.query_requests(limit=10_000)) == 1201


def test_json_columns_are_canonical_and_take_any_value(store: AuditStore, tmp_path: Path) -> None:
    summary = {"zeta": 1, "alpha": {"b": 2, "a": Path("frames/1.jpg")}}
    assert store.write_requests([replace(_req("r1"), output_summary=summary)]) == 1
    db = sqlite3.connect(tmp_path / "audit.db")
    (text,) = db.execute("SELECT output_summary FROM audit_requests").fetchone()
    db.close()
    # Sorted keys, so equal summaries are equal text; a value JSON cannot hold becomes its str.
    assert text == '{"alpha": {"a": "frames/1.jpg", "b": 2}, "zeta": 1}'
    got = store.get_request("r1")
    assert got is not None
    assert got["output_summary"] == {"alpha": {"a": "frames/1.jpg", "b": 2}, "zeta": 1}


# --- reads -----------------------------------------------------------------------------------


def test_queries_return_100_rows_unless_told(store: AuditStore) -> None:
    store.write_requests([_req(f"r{i:03d}", T0 + i, models={}) for i in range(101)])
    store.write_admin([_admin(f"a{i:03d}", T0 + i) for i in range(101)])
    requests, admin = store.query_requests(), store.query_admin()
    assert (len(requests), len(admin)) == (100, 100)
    assert (requests[-1]["request_id"], admin[-1]["action"]) == ("r001", "a001")


def test_rows_are_newest_first_and_ties_go_by_id_descending(store: AuditStore) -> None:
    # Inserted so that neither the insertion order nor its reverse is the id order: only the
    # tie-break puts the three rows recorded at T0 in order.
    order = [("b", T0), ("y", T0 + 1), ("c", T0), ("z", T0 - 1), ("a", T0)]
    store.write_requests([_req(rid, ts) for rid, ts in order])
    store.write_admin([_admin(rid, ts, rid=rid) for rid, ts in order])
    assert _ids(store.query_requests()) == ["y", "c", "b", "a", "z"]
    assert _ids(store.query_admin()) == ["y", "c", "b", "a", "z"]


def test_a_time_window_takes_its_start_and_leaves_out_its_end(store: AuditStore) -> None:
    store.write_requests([_req(f"r{i}", T0 + i, models={}) for i in range(1, 5)])
    store.write_admin([_admin(f"a{i}", T0 + i) for i in range(1, 5)])
    assert _ids(store.query_requests(until=T0 + 2)) == ["r1"]
    assert _ids(store.query_requests(since=T0 + 2, until=T0 + 4)) == ["r3", "r2"]
    assert _ids(store.query_admin(until=T0 + 2)) == ["a1"]
    assert _ids(store.query_admin(since=T0 + 2, until=T0 + 4)) == ["a3", "a2"]
