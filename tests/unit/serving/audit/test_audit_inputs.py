"""The content-addressed store of request bodies, on real files."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from serving.audit import InputStore, sha256_hex
from tests.unit.serving.audit.samples import T0

SHA = sha256_hex(b"jpeg bytes")


@pytest.mark.parametrize(
    "digest",
    [
        SHA.upper(),  # hex, but not lowercase
        "X" * 64,
        SHA[:-1],  # one digit short
        SHA + "0",  # one digit long
        "../etc",
    ],
)
def test_a_body_is_named_only_by_a_lowercase_sha256_hex_digest(tmp_path: Path, digest: str) -> None:
    inputs = InputStore(tmp_path / "inputs")
    with pytest.raises(ValueError) as exc:
        inputs.path(digest)
    assert str(exc.value) == f"not a lowercase sha256 hex digest: {digest!r}"


def test_data_that_does_not_hash_to_its_digest_is_refused(tmp_path: Path) -> None:
    inputs = InputStore(tmp_path / "inputs")
    with pytest.raises(ValueError) as exc:
        inputs.put(SHA, b"other bytes")
    assert str(exc.value) == f"data of 11 bytes does not hash to {SHA!r}"
    assert not (tmp_path / "inputs").exists()


def test_bodies_sharing_a_directory_are_both_kept(tmp_path: Path) -> None:
    first = b"body 0"
    second = next(
        data
        for data in (f"body {i}".encode() for i in itertools.count(1))
        if sha256_hex(data)[:2] == sha256_hex(first)[:2]
    )
    inputs = InputStore(tmp_path / "inputs")
    assert inputs.put(sha256_hex(first), first) is True
    assert inputs.put(sha256_hex(second), second) is True
    assert inputs.path(sha256_hex(first)).parent == inputs.path(sha256_hex(second)).parent
    assert [inputs.get(sha256_hex(d)) for d in (first, second)] == [first, second]


def test_purge_removes_bodies_last_seen_before_the_cutoff_only(tmp_path: Path) -> None:
    inputs = InputStore(tmp_path / "inputs")
    seen = {b"at the cutoff": T0, b"a second before": T0 - 1, b"a day before": T0 - 86_400}
    for data, mtime in seen.items():
        inputs.put(sha256_hex(data), data)
        os.utime(inputs.path(sha256_hex(data)), (mtime, mtime))
    assert inputs.purge(T0) == 2
    assert [inputs.get(sha256_hex(d)) for d in seen] == [b"at the cutoff", None, None]
    assert inputs.purge(T0) == 0


def test_purge_of_a_store_that_never_kept_a_body_removes_nothing(tmp_path: Path) -> None:
    assert InputStore(tmp_path / "never made").purge(T0) == 0


def test_purge_goes_on_past_bodies_that_vanish_under_it(tmp_path: Path) -> None:
    # Another replica deletes bodies while this one purges. A dangling link is such a body: it
    # is listed, then cannot be looked at. Interleaved with real ones, whatever the listing order.
    inputs = InputStore(tmp_path / "inputs")
    folder = tmp_path / "inputs" / "ab"
    folder.mkdir(parents=True)
    for i in range(8):
        (folder / f"old{i}").write_bytes(b"x")
        os.utime(folder / f"old{i}", (T0, T0))
        (folder / f"gone{i}").symlink_to(tmp_path / "nowhere")
    assert inputs.purge(T0 + 1) == 8
    assert sorted(p.name for p in folder.iterdir()) == [f"gone{i}" for i in range(8)]
