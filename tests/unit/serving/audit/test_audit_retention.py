"""Retention: what purge deletes, counted from which moment."""

from __future__ import annotations

import os
import time
from pathlib import Path

from serving.audit import AuditStore, sha256_hex
from tests.unit.serving.audit.samples import DAY, T0
from tests.unit.serving.audit.samples import admin_record as _admin
from tests.unit.serving.audit.samples import ids as _ids
from tests.unit.serving.audit.samples import request_record as _req

NOTHING = {"request_models": 0, "requests": 0, "admin": 0, "inputs": 0}


def test_purge_keeps_what_was_recorded_exactly_at_the_cutoff(store: AuditStore) -> None:
    # `now` is years before the wall clock: purge counts from it, not from time.time().
    cutoff = T0 - 30 * DAY
    store.write_requests([_req("at", cutoff), _req("before", cutoff - 1)])
    store.write_admin([_admin("at", cutoff), _admin("before", cutoff - 1)])
    inputs = store.inputs
    assert inputs is not None
    bodies = {b"at": cutoff, b"before": cutoff - 1, b"long before": cutoff - DAY}
    for data, seen in bodies.items():
        inputs.put(sha256_hex(data), data)
        os.utime(inputs.path(sha256_hex(data)), (seen, seen))

    counts = store.purge(30, now=T0)

    assert counts == {"request_models": 1, "requests": 1, "admin": 1, "inputs": 2}
    assert _ids(store.query_requests(model="detector")) == ["at"]
    assert _ids(store.query_admin()) == ["at"]
    assert [inputs.get(sha256_hex(d)) for d in bodies] == [b"at", None, None]


def test_purge_counts_from_the_wall_clock_unless_told_and_takes_part_days(
    store: AuditStore,
) -> None:
    now = time.time()
    store.write_requests([_req("old", now - 0.75 * DAY), _req("new", now - 0.25 * DAY)])
    assert store.purge(0.5)["requests"] == 1
    assert _ids(store.query_requests()) == ["new"]


def test_purge_without_stored_bodies_counts_none(tmp_path: Path, store: AuditStore) -> None:
    bare = AuditStore(f"sqlite:///{tmp_path / 'bare.db'}")  # keeps no bodies at all
    assert bare.inputs is None
    assert bare.purge(30, now=T0) == NOTHING
    bare.close()
    # The fixture's store keeps bodies, but has never been given one: no directory yet.
    assert not (tmp_path / "inputs").exists()
    assert store.purge(30, now=T0) == NOTHING
