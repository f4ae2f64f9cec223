from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from serving.access import keys as auth
from serving.access.keys import ApiKeyStore, Principal, add_key, list_keys, revoke_key, role_allows
from serving.access.policy import (
    ANONYMOUS,
    AuthPolicy,
    allows,
    check_access,
    describe,
    is_loopback,
    presented_key,
)
from serving.errors import ConfigError, Forbidden, Unauthenticated

ENABLED = AuthPolicy(enabled=True)
DISABLED = AuthPolicy()


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    return tmp_path / "keys.json"


def _store(path: Path, env: dict[str, str] | None = None) -> ApiKeyStore:
    return ApiKeyStore.load(path, env=env or {})


def _count_pbkdf2(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = hashlib.pbkdf2_hmac

    def counting(*args: object, **kwargs: object) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(auth.hashlib, "pbkdf2_hmac", counting)
    return calls


# --- roles ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("have", "need", "allowed"),
    [
        ("infer", "infer", True),
        ("infer", "operator", False),
        ("infer", "admin", False),
        ("operator", "infer", True),
        ("operator", "operator", True),
        ("operator", "admin", False),
        ("admin", "infer", True),
        ("admin", "operator", True),
        ("admin", "admin", True),
        ("root", "infer", False),
    ],
)
def test_role_hierarchy(have: str, need: str, allowed: bool) -> None:
    assert role_allows(have, need) is allowed


def test_role_allows_rejects_unknown_needed_role() -> None:
    with pytest.raises(ValueError, match="'superuser'"):
        role_allows("admin", "superuser")


# --- keys file -----------------------------------------------------------------------------


def test_add_key_then_authenticate_round_trip(keys_file: Path) -> None:
    key = add_key(keys_file, "ci-bot", "operator")
    assert key.startswith("cs_")
    principal = _store(keys_file).authenticate(key)
    assert principal == Principal(name="ci-bot", role="operator", key_id=key.split("_")[1])


def test_keys_file_holds_no_clear_key_and_is_private(keys_file: Path) -> None:
    key = add_key(keys_file, "alice", "admin")
    secret = key.split("_", 2)[2]
    text = keys_file.read_text()
    assert secret not in text
    assert key not in text
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    (record,) = json.loads(text)["keys"]
    assert set(record) == {"id", "name", "role", "salt", "hash", "created_at"}


def test_add_key_creates_missing_parent_dirs(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "keys.json"
    add_key(path, "alice", "infer")
    assert [k["name"] for k in list_keys(path)] == ["alice"]


def test_duplicate_key_name_rejected(keys_file: Path) -> None:
    add_key(keys_file, "alice", "infer")
    with pytest.raises(ValueError, match="'alice'"):
        add_key(keys_file, "alice", "admin")
    assert len(list_keys(keys_file)) == 1


def test_unknown_role_rejected_and_quoted(keys_file: Path) -> None:
    with pytest.raises(ValueError, match="'superuser'"):
        add_key(keys_file, "alice", "superuser")
    assert not keys_file.exists()


def test_bad_key_name_rejected(keys_file: Path) -> None:
    with pytest.raises(ValueError, match="'a:b'"):
        add_key(keys_file, "a:b", "infer")


def test_list_keys_hides_salt_and_hash(keys_file: Path) -> None:
    add_key(keys_file, "alice", "admin")
    add_key(keys_file, "bob", "infer")
    listed = list_keys(keys_file)
    assert [(k["name"], k["role"]) for k in listed] == [("alice", "admin"), ("bob", "infer")]
    assert all("salt" not in k and "hash" not in k for k in listed)
    assert list_keys(keys_file.with_name("missing.json")) == []


def test_revoke_by_name_and_by_id(keys_file: Path) -> None:
    alice = add_key(keys_file, "alice", "admin")
    bob = add_key(keys_file, "bob", "infer")
    assert revoke_key(keys_file, "alice") is True
    assert revoke_key(keys_file, bob.split("_")[1]) is True
    assert revoke_key(keys_file, "alice") is False
    store = _store(keys_file)
    for key in (alice, bob):
        with pytest.raises(Unauthenticated):
            store.authenticate(key)
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600


def test_corrupt_keys_file_is_a_config_error(keys_file: Path) -> None:
    keys_file.write_text("{not json")
    with pytest.raises(ConfigError, match=str(keys_file)):
        _store(keys_file)


def test_missing_keys_file_holds_no_keys(keys_file: Path) -> None:
    assert len(_store(keys_file)) == 0


# --- authenticate / authorize --------------------------------------------------------------


def test_wrong_secret_with_known_id_is_unauthenticated(keys_file: Path) -> None:
    key = add_key(keys_file, "alice", "admin")
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthenticated, match="invalid") as info:
        _store(keys_file).authenticate(forged)
    assert forged not in info.value.message


def test_unknown_id_is_unauthenticated_after_a_dummy_hash(
    keys_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = add_key(keys_file, "alice", "admin")
    store = _store(keys_file)
    calls = _count_pbkdf2(monkeypatch)
    other_id = "00000000" if key.split("_")[1] != "00000000" else "11111111"
    with pytest.raises(Unauthenticated, match="invalid"):
        store.authenticate(f"cs_{other_id}_{key.split('_', 2)[2]}")
    assert len(calls) == 1  # same work as a known id, so timing does not reveal which ids exist


@pytest.mark.parametrize("presented", [None, ""])
def test_missing_key_is_unauthenticated(keys_file: Path, presented: str | None) -> None:
    with pytest.raises(Unauthenticated, match="missing") as info:
        _store(keys_file).authenticate(presented)
    assert info.value.code == "unauthenticated"
    assert info.value.status_code == 401


def test_garbage_key_is_unauthenticated(keys_file: Path) -> None:
    add_key(keys_file, "alice", "admin")
    with pytest.raises(Unauthenticated, match="invalid"):
        _store(keys_file).authenticate("not-a-key")


def test_successful_check_is_cached(keys_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = add_key(keys_file, "alice", "infer")
    store = _store(keys_file)
    calls = _count_pbkdf2(monkeypatch)
    first = store.authenticate(key)
    for _ in range(100):
        assert store.authenticate(key) == first
    # One PBKDF2 derivation for 101 checks: the cache answered the other 100 (the slow hash
    # is what a cache hit skips; counting it needs no clock).
    assert len(calls) == 1


def test_a_failed_check_is_remembered_briefly(
    keys_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replayed bad key costs a sha256, not a PBKDF2, until FAILED_TTL_S has passed; a
    reload (the keys file changed: the key may exist now) forgets it."""
    add_key(keys_file, "alice", "infer")
    store = _store(keys_file)
    calls = _count_pbkdf2(monkeypatch)
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            store.authenticate("cs_deadbeef_nope")
    assert len(calls) == 1
    with pytest.raises(Unauthenticated):
        _store(keys_file).authenticate("cs_deadbeef_nope")
    assert len(calls) == 2


def test_infer_key_on_operator_route_is_forbidden(keys_file: Path) -> None:
    key = add_key(keys_file, "app", "infer")
    store = _store(keys_file)
    principal = store.authenticate(key)
    store.authorize(principal, "infer")
    with pytest.raises(Forbidden) as info:
        store.authorize(principal, "operator")
    assert info.value.status_code == 403
    assert info.value.code == "forbidden"
    assert "'operator'" in info.value.message
    assert "'infer'" in info.value.message
    assert "'app'" in info.value.message


# --- env var keys --------------------------------------------------------------------------


def test_env_var_keys_combine_with_file(keys_file: Path) -> None:
    file_key = add_key(keys_file, "alice", "admin")
    env = {auth.ENV_KEYS: "ci:operator:s3cret-token, dash:infer:cs_0123abcd_xyz:with:colons"}
    store = _store(keys_file, env)
    assert len(store) == 3
    assert store.sources == (str(keys_file), auth.ENV_KEYS)
    assert store.authenticate(file_key).name == "alice"
    assert store.authenticate("s3cret-token") == Principal("ci", "operator", "env:ci")
    assert store.authenticate("cs_0123abcd_xyz:with:colons") == Principal(
        "dash", "infer", "0123abcd"
    )
    with pytest.raises(Unauthenticated):
        store.authenticate("s3cret-token-x")


def test_env_var_default_is_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(auth.ENV_KEYS, "ci:admin:tok")
    assert ApiKeyStore.load(None).authenticate("tok").name == "ci"


def test_malformed_env_entry_does_not_echo_secret() -> None:
    with pytest.raises(ConfigError, match="entry #2") as info:
        ApiKeyStore.load(None, env={auth.ENV_KEYS: "a:infer:tok1,hunter2"})
    assert "hunter2" not in info.value.message


def test_env_var_unknown_role_and_duplicate_names_rejected(keys_file: Path) -> None:
    with pytest.raises(ConfigError, match="'root'"):
        ApiKeyStore.load(None, env={auth.ENV_KEYS: "a:root:tok"})
    add_key(keys_file, "alice", "infer")
    with pytest.raises(ConfigError, match="alice"):
        _store(keys_file, {auth.ENV_KEYS: "alice:admin:tok"})


# --- presented_key -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Authorization": "Bearer cs_k"}, "cs_k"),
        ({"authorization": "bearer   cs_k  "}, "cs_k"),
        ({"X-API-Key": "cs_k"}, "cs_k"),
        ({"x-api-key": "cs_k"}, "cs_k"),
        ({"AUTHORIZATION": "Bearer cs_a", "x-api-key": "cs_b"}, "cs_a"),
        ({"Authorization": "Basic x", "X-Api-Key": "cs_b"}, "cs_b"),
        ({"Authorization": "Basic x"}, None),
        ({"Authorization": "Bearer"}, None),
        ({"Authorization": "Bearer "}, None),
        ({"X-API-Key": "  "}, None),
        ({}, None),
    ],
)
def test_presented_key(headers: dict[str, str], expected: str | None) -> None:
    assert presented_key(headers) == expected


def test_presented_key_reads_starlette_headers() -> None:
    from starlette.datastructures import Headers

    assert presented_key(Headers({"X-API-Key": "cs_k"})) == "cs_k"
    assert presented_key(Headers({"Authorization": "Bearer cs_k"})) == "cs_k"


# --- policy and check_access ---------------------------------------------------------------


def test_policy_is_strict_and_frozen() -> None:
    with pytest.raises(ValidationError):
        AuthPolicy(enabeld=True)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        DISABLED.enabled = True  # type: ignore[misc]


def test_keys_path_relative_to_data_dir(tmp_path: Path) -> None:
    assert AuthPolicy().keys_path(tmp_path) is None
    assert AuthPolicy(keys_file="keys.json").keys_path(tmp_path) == tmp_path / "keys.json"
    assert AuthPolicy(keys_file="/etc/k.json").keys_path(tmp_path) == Path("/etc/k.json")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("10.0.0.5", False),
        ("::ffff:10.0.0.5", False),
        ("testclient", False),
        ("", False),
        (None, False),
    ],
)
def test_is_loopback(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_enabled_policy_authenticates_and_authorizes(keys_file: Path) -> None:
    admin = add_key(keys_file, "root", "admin")
    infer = add_key(keys_file, "app", "infer")
    store = _store(keys_file)
    bearer = {"Authorization": f"Bearer {admin}"}
    assert check_access(ENABLED, store, bearer, "10.0.0.5", "admin").name == "root"
    assert check_access(ENABLED, store, {"x-api-key": infer}, None, "infer").name == "app"
    with pytest.raises(Forbidden):
        check_access(ENABLED, store, {"x-api-key": infer}, "127.0.0.1", "operator")
    with pytest.raises(Unauthenticated, match="missing"):
        check_access(ENABLED, store, {}, "127.0.0.1", "infer")


def test_disabled_policy_allows_admin_on_loopback_only(keys_file: Path) -> None:
    store = _store(keys_file)
    for host in ("127.0.0.1", "::1", "localhost"):
        assert check_access(DISABLED, store, {}, host, "admin") == ANONYMOUS
    for need in ("admin", "operator"):
        with pytest.raises(Forbidden, match="loopback") as info:
            check_access(DISABLED, store, {}, "10.0.0.5", need)
        assert info.value.code == "forbidden"
    with pytest.raises(Forbidden):
        check_access(DISABLED, None, {}, None, "admin")
    assert check_access(DISABLED, store, {}, "10.0.0.5", "infer") == Principal(
        "anonymous", "admin", None
    )


def test_disabled_policy_without_loopback_guard_allows_everyone() -> None:
    policy = AuthPolicy(admin_loopback_only_when_disabled=False)
    assert check_access(policy, None, {}, "10.0.0.5", "admin").name == "anonymous"


def test_disabled_policy_names_a_valid_key_and_ignores_a_bad_one(keys_file: Path) -> None:
    key = add_key(keys_file, "app", "infer")
    store = _store(keys_file)
    named = check_access(DISABLED, store, {"X-API-Key": key}, "10.0.0.5", "infer")
    assert (named.name, named.key_id) == ("app", key.split("_")[1])
    bad = {"X-API-Key": "cs_deadbeef_nope"}
    assert check_access(DISABLED, store, bad, "10.0.0.5", "infer") == ANONYMOUS


# --- describe ------------------------------------------------------------------------------


def test_describe(keys_file: Path) -> None:
    for name, role in [("a", "admin"), ("o", "operator"), ("i", "infer")]:
        add_key(keys_file, name, role)
    line = describe(ENABLED, _store(keys_file))
    assert line == f"auth: enabled, 3 keys (1 admin, 1 operator, 1 infer) from {keys_file}"
    assert "refused" in describe(ENABLED, ApiKeyStore.load(None, env={}))
    assert describe(DISABLED, None) == (
        "auth: disabled (local default); admin routes answer only on loopback"
    )


def test_describe_every_policy_exactly(keys_file: Path) -> None:
    add_key(keys_file, "a", "admin")
    both = _store(keys_file, env={auth.ENV_KEYS: "ci:operator:tok"})
    assert describe(ENABLED, both) == (
        f"auth: enabled, 2 keys (1 admin, 1 operator, 0 infer) from {keys_file}, {auth.ENV_KEYS}"
    )
    assert describe(ENABLED, None) == "auth: enabled, 0 keys: every request will be refused"
    assert describe(ENABLED, ApiKeyStore.load(None, env={})) == (
        "auth: enabled, 0 keys: every request will be refused"
    )
    open_everywhere = AuthPolicy(admin_loopback_only_when_disabled=False)
    assert describe(open_everywhere, None) == (
        "auth: disabled; admin routes answer on every interface"
    )


def test_keys_live_in_the_configured_file_else_in_the_data_dir(tmp_path: Path) -> None:
    from serving.access.keys import DEFAULT_KEYS_FILE

    assert DISABLED.keys_file_in(tmp_path) == tmp_path / DEFAULT_KEYS_FILE
    assert DISABLED.keys_path(tmp_path) is None
    custom = AuthPolicy(keys_file="conf/keys.json")
    assert custom.keys_file_in(tmp_path) == tmp_path / "conf" / "keys.json"
    assert custom.keys_path(tmp_path) == tmp_path / "conf" / "keys.json"


def test_enabled_auth_without_a_key_store_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        check_access(ENABLED, None, {}, "127.0.0.1", "infer")
    assert info.value.message == "auth is enabled but no API key store was loaded"


def test_a_remote_admin_call_with_auth_off_is_refused_naming_the_role() -> None:
    with pytest.raises(Forbidden) as info:
        check_access(DISABLED, None, {}, "10.0.0.5", "operator")
    assert info.value.details == {"need_role": "operator"}
    assert "'operator' routes answer only on loopback (client '10.0.0.5')" in info.value.message


def test_with_auth_off_a_key_names_the_caller_who_keeps_the_open_role(keys_file: Path) -> None:
    key = add_key(keys_file, "app", "infer")
    named = check_access(DISABLED, _store(keys_file), {"X-API-Key": key}, "127.0.0.1", "admin")
    # Auth off: the key only names the caller; the role stays the open one (admin on loopback).
    assert (named.name, named.role) == ("app", ANONYMOUS.role) == ("app", "admin")
    # With no key store, a presented key is simply not looked at.
    assert check_access(DISABLED, None, {"X-API-Key": key}, "127.0.0.1", "infer") == ANONYMOUS


def test_only_exact_loopback_addresses_are_loopback() -> None:
    assert is_loopback("[::1]") and is_loopback("::ffff:127.0.0.1") and is_loopback("localhost")
    assert not is_loopback("X127.0.0.1X") and not is_loopback("127.0.0.1X")
    assert not is_loopback(None) and not is_loopback("")


# --- allows: the same rules as a yes/no (who may pin a rollout's challenger) -----------------


@pytest.mark.parametrize(
    ("policy", "role", "host", "need", "allowed"),
    [
        (ENABLED, "infer", "10.0.0.5", "infer", True),
        (ENABLED, "infer", "127.0.0.1", "operator", False),  # loopback is no role
        (ENABLED, "operator", "10.0.0.5", "operator", True),
        (ENABLED, "admin", "10.0.0.5", "operator", True),
        (ENABLED, "operator", "10.0.0.5", "admin", False),
        (DISABLED, "admin", "127.0.0.1", "operator", True),
        (DISABLED, "admin", "::1", "operator", True),
        (DISABLED, "admin", "10.0.0.5", "operator", False),
        (DISABLED, "admin", None, "operator", False),
        (DISABLED, "admin", "10.0.0.5", "infer", True),
        (
            AuthPolicy(admin_loopback_only_when_disabled=False),
            "admin",
            "10.0.0.5",
            "operator",
            True,
        ),
    ],
)
def test_allows_follows_check_access(
    policy: AuthPolicy, role: str, host: str | None, need: str, allowed: bool
) -> None:
    principal = Principal(name="caller", role=role, key_id="k1")
    assert allows(policy, principal, host, need) is allowed
