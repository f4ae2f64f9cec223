"""The store on SQLite: where the file goes, and the locks that let replicas share it."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from serving.audit import AuditStore
from tests.unit.serving.audit.samples import ids as _ids
from tests.unit.serving.audit.samples import request_record as _req

SIDE_FILES = {"audit.db", "audit.db-wal", "audit.db-shm"}


def test_a_sqlite_file_in_a_missing_directory_gets_the_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a' / 'b' / 'audit.db'}"
    first = AuditStore(url)
    assert first.write_requests([_req("r1")]) == 1
    first.close()
    assert (tmp_path / "a" / "b" / "audit.db").is_file()
    again = AuditStore(url)  # the directory is there now
    assert _ids(again.query_requests()) == ["r1"]
    again.close()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_store_works_and_leaves_no_files(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = AuditStore(url)
    assert store.write_requests([_req("r1")]) == 1
    assert _ids(store.query_requests(model="detector")) == ["r1"]
    store.close()
    assert list(tmp_path.iterdir()) == []


def test_a_sqlite_uri_filename_is_not_taken_for_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = AuditStore(f"sqlite:///file:{tmp_path / 'audit.db'}?uri=true")
    assert store.write_requests([_req("r1")]) == 1
    assert store.get_request("r1") is not None
    store.close()
    # No directory named after the URI ("file:/...") appears beside the database.
    assert {p.name for p in tmp_path.iterdir()} <= SIDE_FILES


class LockProbe:
    """A summary value whose str() (the store's fallback for values JSON cannot hold) runs
    inside the store's write transaction, and tries to start a write from another connection."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.found_locked: list[bool] = []

    def __deepcopy__(self, memo: dict[int, Any]) -> LockProbe:
        return self  # a record's to_dict() copies its values; keep the one probe

    def __str__(self) -> str:
        other = sqlite3.connect(self.db, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            self.found_locked.append(False)
        except sqlite3.OperationalError:
            self.found_locked.append(True)
        finally:
            other.close()
        return "probe"


def test_a_write_holds_the_write_lock_from_its_first_statement(
    store: AuditStore, tmp_path: Path
) -> None:
    # The check for known ids and the insert are one transaction that another replica cannot
    # write into: so a retried batch never adds a row twice, nor fails on one added meanwhile.
    store.write_requests([_req("r1")])
    probe = LockProbe(tmp_path / "audit.db")
    record = replace(_req("r2"), output_summary={"probe": probe})
    assert store.write_requests([_req("r1"), record]) == 1
    assert probe.found_locked == [True]
    got = store.get_request("r2")
    assert got is not None and got["output_summary"] == {"probe": "probe"}


def test_reads_do_not_wait_for_another_replica_writing(store: AuditStore, tmp_path: Path) -> None:
    store.write_requests([_req("r1")])
    other = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another replica in the middle of a write
    try:
        assert store.get_request("r1") is not None
        assert _ids(store.query_requests()) == ["r1"]
        assert store.query_admin() == []
    finally:
        other.execute("ROLLBACK")
        other.close()
