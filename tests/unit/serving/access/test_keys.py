"""serving.access.keys: the keys file format, env-var keys, the check cache, exact messages.

Messages are pinned exactly where a client or an operator reads them (401/403 bodies, the
startup error that names a bad record); formats are pinned where another tool or an older
keys file depends on them (the PBKDF2 parameters, the record fields, the JSON layout).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import stat
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from serving.access import keys as auth
from serving.access.keys import (
    ENV_KEYS,
    ApiKeyStore,
    Principal,
    add_key,
    list_keys,
    revoke_key,
)
from serving.errors import ConfigError, Forbidden, Unauthenticated

SALT = bytes(range(16))
SECRET = "s3cret-Secret_1"


def _pbkdf2(secret: str, salt: bytes) -> bytes:
    """The documented at-rest hash: PBKDF2-HMAC-SHA256, 10 000 rounds, per-key salt."""
    return hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, 10_000)


def _record(key_id: str = "0123abcd", name: str = "legacy", **over: Any) -> dict[str, Any]:
    rec = {
        "id": key_id,
        "name": name,
        "role": "operator",
        "salt": SALT.hex(),
        "hash": _pbkdf2(SECRET, SALT).hex(),
        "created_at": "2025-01-01T00:00:00+00:00",
    }
    return {**rec, **over}


def _write_keys(path: Path, *records: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"keys": list(records)}))
    return path


def _load(path: Path | None, env_value: str | None = None) -> ApiKeyStore:
    return ApiKeyStore.load(path, env={} if env_value is None else {ENV_KEYS: env_value})


def _count_pbkdf2(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = hashlib.pbkdf2_hmac

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(auth.hashlib, "pbkdf2_hmac", counting)
    return calls


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    return tmp_path / "keys.json"


# --- the keys file as written by hand or by an older version -------------------------------


def test_a_hand_written_record_authenticates_with_the_documented_hash(keys_file: Path) -> None:
    store = _load(_write_keys(keys_file, _record()))
    legacy = Principal("legacy", "operator", "0123abcd")
    assert store.authenticate(f"cs_0123abcd_{SECRET}") == legacy
    assert store.sources == (str(keys_file),)
    for wrong in (f"cs_0123abcd_{SECRET}x", f"cs_0123abcd_{SECRET.upper()}", SECRET):
        with pytest.raises(Unauthenticated):
            store.authenticate(wrong)


def test_an_empty_keys_file_is_a_source_with_no_keys(keys_file: Path) -> None:
    store = _load(_write_keys(keys_file))
    assert (len(store), store.sources) == (0, (str(keys_file),))


@pytest.mark.parametrize("bad_id", ["0123ABCD", "0123abc", "0123abcde", "xyz", 12345678, None])
def test_a_record_id_must_be_8_lowercase_hex_digits(keys_file: Path, bad_id: object) -> None:
    _write_keys(keys_file, _record(key_id=bad_id))  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as info:
        _load(keys_file)
    assert info.value.message == (
        f"bad key record 'legacy' in {keys_file}: id {bad_id!r} is not 8 hex digits"
    )


@pytest.mark.parametrize(
    ("over", "drop", "reason"),
    [
        ({}, "hash", "'hash'"),
        ({}, "salt", "'salt'"),
        ({}, "role", "'role'"),
        ({}, "id", "'id'"),
        ({"salt": "zz"}, None, "non-hexadecimal number found in fromhex() arg at position 0"),
        ({"hash": None}, None, "fromhex() argument must be str, not None"),
    ],
)
def test_a_broken_record_is_named_in_the_error(
    keys_file: Path, over: dict[str, Any], drop: str | None, reason: str
) -> None:
    rec = _record(name="alice", **over)
    if drop:
        del rec[drop]
    _write_keys(keys_file, rec)
    with pytest.raises(ConfigError) as info:
        _load(keys_file)
    assert info.value.message == f"bad key record 'alice' in {keys_file}: {reason}"


def test_a_record_without_a_name_is_reported_as_none(keys_file: Path) -> None:
    rec = _record()
    del rec["name"]
    _write_keys(keys_file, rec)
    with pytest.raises(ConfigError) as info:
        _load(keys_file)
    assert info.value.message == f"bad key record None in {keys_file}: 'name'"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"keys": {}}', "TypeError(\"'keys' is not a list of objects\")"),
        ('{"keys": [1]}', "TypeError(\"'keys' is not a list of objects\")"),
        ('{"keys": "abc"}', "TypeError(\"'keys' is not a list of objects\")"),
        ('{"nokeys": []}', "KeyError('keys')"),
    ],
)
def test_a_keys_file_of_the_wrong_shape_is_a_config_error(
    keys_file: Path, text: str, reason: str
) -> None:
    keys_file.write_text(text)
    for read in (_load, list_keys, lambda p: add_key(p, "bob", "infer")):
        with pytest.raises(ConfigError) as info:
            read(keys_file)
        assert info.value.message == f"cannot read API keys file {keys_file}: {reason}"
    assert keys_file.read_text() == text  # a failed add leaves the file as it was


def test_a_directory_in_place_of_the_keys_file_is_a_config_error(keys_file: Path) -> None:
    keys_file.mkdir()
    with pytest.raises(ConfigError, match=r"^cannot read API keys file .*IsADirectoryError"):
        _load(keys_file)


# --- the store: duplicates, roles, counts --------------------------------------------------


def test_duplicate_names_unknown_roles_and_duplicate_ids_are_refused(keys_file: Path) -> None:
    _write_keys(keys_file, _record(name="alice"), _record(key_id="0badf00d", name="alice"))
    with pytest.raises(ConfigError) as info:
        _load(keys_file)
    assert info.value.message == "duplicate API key names ['alice']"

    _write_keys(keys_file, _record(name="alice", role="root"))
    with pytest.raises(ConfigError) as info:
        _load(keys_file)
    assert info.value.message == (
        "API key 'alice' has unknown role 'root'; expected ('infer', 'operator', 'admin')"
    )

    _write_keys(keys_file, _record(name="alice"), _record(name="bob"))
    with pytest.raises(ConfigError) as info:
        _load(keys_file)
    assert info.value.message == "duplicate API key id '0123abcd'"


def test_an_env_key_may_not_reuse_the_id_of_a_file_key(keys_file: Path) -> None:
    _write_keys(keys_file, _record(name="alice"))
    with pytest.raises(ConfigError) as info:
        _load(keys_file, "ci:infer:cs_0123abcd_other")
    assert info.value.message == "duplicate API key id '0123abcd'"


def test_role_counts_lists_every_role_from_most_to_least_powerful() -> None:
    store = _load(None, "a:infer:ka,b:admin:kb,c:infer:kc")
    counts = store.role_counts()
    assert counts == {"admin": 1, "operator": 0, "infer": 2}
    assert list(counts) == ["admin", "operator", "infer"]
    assert _load(None).role_counts() == {"admin": 0, "operator": 0, "infer": 0}


# --- env var keys --------------------------------------------------------------------------


def test_empty_env_entries_are_skipped_but_still_numbered() -> None:
    store = _load(None, "a:infer:t1,, b:admin:t2 ,")
    assert (len(store), store.sources) == (2, (ENV_KEYS,))
    assert store.authenticate("t2") == Principal("b", "admin", "env:b")
    with pytest.raises(ConfigError) as info:
        _load(None, "a:infer:t1,,hunter2")
    assert info.value.message == f"{ENV_KEYS} entry #3 is not 'name:role:key'"


@pytest.mark.parametrize("entry", ["a:infer", "a:infer:", ":infer:tok", "a::tok", "justtoken"])
def test_an_env_entry_needs_a_name_a_role_and_a_key(entry: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(None, entry)
    assert info.value.message == f"{ENV_KEYS} entry #1 is not 'name:role:key'"


@pytest.mark.parametrize("value", ["", "   "])
def test_a_blank_env_var_adds_no_keys_and_no_source(value: str) -> None:
    store = _load(None, value)
    assert (len(store), store.sources) == (0, ())


# --- authenticate / authorize --------------------------------------------------------------


@pytest.mark.parametrize("presented", [None, ""])
def test_the_missing_key_message_says_how_to_send_one(presented: str | None) -> None:
    with pytest.raises(Unauthenticated) as info:
        _load(None, "a:infer:tok").authenticate(presented)
    assert info.value.message == (
        "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
    )


@pytest.mark.parametrize("presented", ["cs_0123abcd_wrong", "cs_deadbeef_x", "nope", "tok "])
def test_a_wrong_key_gets_one_message_that_tells_nothing(presented: str) -> None:
    store = _load(None, "a:infer:tok,b:infer:cs_0123abcd_right")
    with pytest.raises(Unauthenticated) as info:
        store.authenticate(presented)
    assert info.value.message == "invalid API key"
    assert info.value.details == {}


def test_cached_keys_do_not_answer_for_other_keys() -> None:
    store = _load(None, "a:infer:ka,b:admin:kb")
    assert store.authenticate("ka").name == "a"
    assert store.authenticate("kb").name == "b"
    assert store.authenticate("ka").name == "a"
    with pytest.raises(Unauthenticated):
        store.authenticate("kc")


def test_a_full_cache_is_emptied_before_the_next_key_goes_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(auth, "CACHE_SIZE", 2)
    store = _load(None, "a:infer:ka,b:infer:kb,c:infer:kc")
    calls = _count_pbkdf2(monkeypatch)
    store.authenticate("ka")
    store.authenticate("kb")
    store.authenticate("ka")  # a hit: the cache holds 2, its size, and is not cleared
    assert len(calls) == 2
    store.authenticate("kc")  # full: cleared, then kc goes in
    store.authenticate("kc")
    assert len(calls) == 3
    store.authenticate("ka")  # was cleared: derived again
    assert len(calls) == 4


def test_forbidden_names_the_route_role_and_the_key() -> None:
    store = _load(None, "app:infer:tok,ops:operator:tok2")
    with pytest.raises(Forbidden) as info:
        store.authorize(store.authenticate("tok"), "operator")
    assert info.value.message == "this route needs role 'operator'; key 'app' has role 'infer'"
    assert info.value.details == {"need_role": "operator", "role": "infer"}
    store.authorize(store.authenticate("tok2"), "operator")
    with pytest.raises(ValueError, match=r"unknown role 'root'; expected one of \['infer'"):
        store.authorize(store.authenticate("tok2"), "root")


# --- add / revoke / list -------------------------------------------------------------------


def test_add_key_writes_the_documented_record(keys_file: Path) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    key = add_key(keys_file, "ci-bot", "operator")
    after = datetime.now(UTC)
    match = re.fullmatch(r"cs_([0-9a-f]{8})_([A-Za-z0-9_-]{43})", key)  # 32 random bytes
    assert match, key
    key_id, secret = match.groups()
    (rec,) = json.loads(keys_file.read_text())["keys"]
    assert (rec["id"], rec["name"], rec["role"]) == (key_id, "ci-bot", "operator")
    salt = bytes.fromhex(rec["salt"])
    assert len(salt) == 16
    assert rec["hash"] == _pbkdf2(secret, salt).hex()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", rec["created_at"])
    assert before <= datetime.fromisoformat(rec["created_at"]) <= after
    # Indented JSON: operators read and diff this file.
    assert keys_file.read_text() == json.dumps({"keys": [rec]}, indent=2)
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600


def test_two_keys_get_different_salts_and_secrets(keys_file: Path) -> None:
    a, b = add_key(keys_file, "a", "infer"), add_key(keys_file, "b", "infer")
    recs = json.loads(keys_file.read_text())["keys"]
    assert recs[0]["salt"] != recs[1]["salt"]
    assert a.split("_", 2)[2] != b.split("_", 2)[2]


def test_a_new_key_never_reuses_an_id_already_in_the_file(
    keys_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = add_key(keys_file, "alice", "infer")
    taken = first.split("_")[1]
    real = secrets.token_hex
    forced = [taken, taken]  # the random source repeats an id twice before a fresh one
    monkeypatch.setattr(auth.secrets, "token_hex", lambda n: forced.pop(0) if forced else real(n))
    second = add_key(keys_file, "bob", "infer")
    assert forced == []
    assert second.split("_")[1] != taken
    store = _load(keys_file)
    assert (store.authenticate(first).name, store.authenticate(second).name) == ("alice", "bob")


@pytest.mark.parametrize("name", ["a", "A.b_c-9", "9" * 64])
def test_key_names_that_are_accepted(keys_file: Path, name: str) -> None:
    add_key(keys_file, name, "infer")
    assert [k["name"] for k in list_keys(keys_file)] == [name]


@pytest.mark.parametrize("name", ["", ".a", "-a", "_a", "a" * 65, "a b", "a:b", "a,b", "é"])
def test_key_names_that_are_refused(keys_file: Path, name: str) -> None:
    with pytest.raises(ValueError) as info:
        add_key(keys_file, name, "infer")
    assert str(info.value) == (f"bad key name {name!r}: use letters, digits, '.', '_', '-' (<= 64)")
    assert not keys_file.exists()


def test_refusals_quote_the_value_exactly(keys_file: Path) -> None:
    with pytest.raises(ValueError) as info:
        add_key(keys_file, "alice", "root")
    assert str(info.value) == "unknown role 'root'; expected one of ['infer', 'operator', 'admin']"
    add_key(keys_file, "alice", "infer")
    with pytest.raises(ValueError) as info:
        add_key(keys_file, "alice", "infer")
    assert str(info.value) == f"an API key named 'alice' already exists in {keys_file}"


def test_the_keys_file_is_rewritten_beside_itself_not_in_the_system_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The temp file must sit on the keys file's own filesystem (a mounted volume), so the
    # final rename is atomic; the system temp dir may be elsewhere, or unusable as here.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-dir"))
    path = tmp_path / "vol" / "keys.json"
    add_key(path, "alice", "infer")
    add_key(path, "bob", "infer")
    assert revoke_key(path, "alice") is True
    # No temp file left: the keys file and its writers' lock (an empty, hidden sibling).
    assert sorted(p.name for p in path.parent.iterdir()) == [".keys.json.lock", "keys.json"]
    assert [k["name"] for k in list_keys(path)] == ["bob"]


def test_a_write_in_progress_is_a_hidden_file_named_for_its_keys_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A write cut short (a full disk, a killed process) leaves `.keys.json.<random>`: hidden
    # from a listing of the volume, and clearly the leftover of this file.
    renamed: list[tuple[str, str]] = []
    real_replace = auth.os.replace

    def replace(src: str, dst: str) -> None:
        renamed.append((Path(src).name, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(auth.os, "replace", replace)
    add_key(tmp_path / "keys.json", "alice", "infer")
    [(src, dst)] = renamed
    assert src.startswith(".keys.json.") and len(src) > len(".keys.json.") and dst == "keys.json"


def test_revoking_one_key_keeps_the_others(keys_file: Path) -> None:
    alice = add_key(keys_file, "alice", "admin")
    bob = add_key(keys_file, "bob", "infer")
    keys_file.chmod(0o644)
    assert revoke_key(keys_file, alice.split("_")[1]) is True
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600  # a rewrite is private again
    assert [k["name"] for k in list_keys(keys_file)] == ["bob"]
    store = _load(keys_file)
    assert store.authenticate(bob).name == "bob"
    with pytest.raises(Unauthenticated):
        store.authenticate(alice)


def test_revoking_an_unknown_key_changes_nothing(keys_file: Path) -> None:
    assert revoke_key(keys_file, "alice") is False
    assert not keys_file.exists()
    add_key(keys_file, "alice", "admin")
    keys_file.chmod(0o640)
    text = keys_file.read_text()
    assert revoke_key(keys_file, "bob") is False
    assert keys_file.read_text() == text
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o640  # not rewritten


def test_list_keys_shows_every_field_but_the_salt_and_hash(keys_file: Path) -> None:
    _write_keys(keys_file, _record(note="rotated 2025-06"))
    assert list_keys(keys_file) == [
        {
            "id": "0123abcd",
            "name": "legacy",
            "role": "operator",
            "created_at": "2025-01-01T00:00:00+00:00",
            "note": "rotated 2025-06",
        }
    ]


def test_keys_added_at_once_by_many_writers_are_all_kept(tmp_path: Path) -> None:
    """The CLI and the ingress replicas share one keys file: each add is a read-modify-write,
    so two at once must not lose either key (the file's lock serialises them)."""
    path = tmp_path / "api_keys.json"
    start = threading.Barrier(12)

    def add(i: int) -> str:
        start.wait()
        return add_key(path, f"app{i}", "infer")

    with ThreadPoolExecutor(12) as pool:
        made = list(pool.map(add, range(12)))
    assert sorted(k["name"] for k in list_keys(path)) == sorted(f"app{i}" for i in range(12))
    store = ApiKeyStore.load(path, {})
    assert {store.authenticate(k).name for k in made} == {f"app{i}" for i in range(12)}
    with ThreadPoolExecutor(12) as pool:
        assert all(pool.map(lambda i: revoke_key(path, f"app{i}"), range(0, 12, 2)))
    assert sorted(k["name"] for k in list_keys(path)) == sorted(f"app{i}" for i in range(1, 12, 2))
