"""API keys with roles for the HTTP API: ``infer`` ⊂ ``operator`` ⊂ ``admin``.

A key reads ``cs_<key_id>_<secret>``: the 8-hex ``key_id`` is public and finds the record in
O(1); only a salted PBKDF2 hash of the secret is ever written down. Keys come from a JSON keys
file (``{"keys": [{id, name, role, salt, hash, created_at}, ...]}``, mode 0600) and/or the
``CANARYSERVE_API_KEYS`` env var (``name:role:key,...``, hashed on load). Successful checks are
cached by sha256 of the whole key, so a repeated request costs one sha256 and a dict lookup;
failed ones too, for :data:`FAILED_TTL_S`. What a client may make the server hash is bounded by
``serving.access.throttle``.

Who may call which route is ``serving.access.policy``.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serving.errors import ConfigError, Forbidden, Unauthenticated

ROLES: tuple[str, ...] = ("infer", "operator", "admin")  # each role includes those before it
DEFAULT_KEYS_FILE = "api_keys.json"
ENV_KEYS = "CANARYSERVE_API_KEYS"
ITERATIONS = 10_000  # ~2 ms per check; paid once per key thanks to the cache
CACHE_SIZE = 4096
FAILED_TTL_S = 60.0  # a key that failed is refused from memory for this long
_KEY_RE = re.compile(r"cs_([0-9a-f]{8})_(.+)")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DUMMY_SALT = secrets.token_bytes(16)
_DUMMY_HASH = hashlib.pbkdf2_hmac("sha256", secrets.token_bytes(16), _DUMMY_SALT, ITERATIONS)


def role_allows(have: str, need: str) -> bool:
    if need not in ROLES:
        raise ValueError(f"unknown role {need!r}; expected one of {list(ROLES)}")
    return have in ROLES and ROLES.index(have) >= ROLES.index(need)


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    key_id: str | None


@dataclass(frozen=True)
class _Record:
    lookup_id: str  # the public id, or a digest of the whole key for a plain env-var key
    principal: Principal
    salt: bytes
    hashed: bytes


def _split(key: str) -> tuple[str, str]:
    """(lookup id, secret). A key not in ``cs_`` form (env var only) is looked up by digest."""
    match = _KEY_RE.fullmatch(key)
    if match:
        return match.group(1), match.group(2)
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest(), key


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, ITERATIONS)


def _file_records(path: Path) -> list[_Record]:
    records = []
    for raw in _read(path):
        try:
            # An 8-digit JSON number would pass as text yet never match a presented key.
            if not isinstance(raw["id"], str) or not re.fullmatch(r"[0-9a-f]{8}", raw["id"]):
                raise ValueError(f"id {raw['id']!r} is not 8 hex digits")
            principal = Principal(raw["name"], raw["role"], raw["id"])
            salt, hashed = bytes.fromhex(raw["salt"]), bytes.fromhex(raw["hash"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"bad key record {raw.get('name')!r} in {path}: {exc}") from exc
        records.append(_Record(raw["id"], principal, salt, hashed))
    return records


def _env_records(value: str) -> list[_Record]:
    records = []
    for i, entry in enumerate(e.strip() for e in value.split(",")):
        if not entry:
            continue
        name, role, key = [*entry.split(":", 2), "", ""][:3]
        if not (name and role and key):  # never quote the entry: it holds a secret
            raise ConfigError(f"{ENV_KEYS} entry #{i + 1} is not 'name:role:key'")
        lookup_id, secret = _split(key)
        public_id = f"env:{name}" if lookup_id.startswith("sha256:") else lookup_id
        salt = secrets.token_bytes(16)
        principal = Principal(name, role, public_id)
        records.append(_Record(lookup_id, principal, salt, _hash(secret, salt)))
    return records


class ApiKeyStore:
    """Hashed keys in memory; build one with :meth:`load`. Reload it to see revocations."""

    def __init__(
        self,
        records: list[_Record],
        sources: tuple[str, ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        names = [r.principal.name for r in records]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ConfigError(f"duplicate API key names {dupes}")
        self._by_id: dict[str, _Record] = {}
        for rec in records:
            name, role = rec.principal.name, rec.principal.role
            if role not in ROLES:
                raise ConfigError(f"API key {name!r} has unknown role {role!r}; expected {ROLES}")
            if rec.lookup_id in self._by_id:
                raise ConfigError(f"duplicate API key id {rec.principal.key_id!r}")
            self._by_id[rec.lookup_id] = rec
        self.sources = sources
        self._clock = clock
        self._cache: dict[bytes, Principal] = {}
        # Keys that failed, by digest -> when they may be hashed again: a client replaying a
        # bad key costs a sha256, not a PBKDF2, until then. A reload (keys added) clears it.
        self._failed: dict[bytes, float] = {}
        self.hashes = 0  # PBKDF2 checks of presented keys done by this store

    @classmethod
    def load(cls, path: Path | None, env: Mapping[str, str] | None = None) -> ApiKeyStore:
        """Keys in ``path`` (a missing file holds none) plus those in ``$CANARYSERVE_API_KEYS``."""
        env = os.environ if env is None else env
        records, sources = [], []
        if path is not None and path.exists():
            records += _file_records(path)
            sources.append(str(path))
        if env.get(ENV_KEYS, "").strip():
            records += _env_records(env[ENV_KEYS])
            sources.append(ENV_KEYS)
        return cls(records, tuple(sources))

    def __len__(self) -> int:
        return len(self._by_id)

    def role_counts(self) -> dict[str, int]:
        roles = [r.principal.role for r in self._by_id.values()]
        return {role: roles.count(role) for role in reversed(ROLES)}

    def settled(self, presented: str) -> bool:
        """Whether checking ``presented`` costs no hash now: it passed, or failed recently."""
        digest = hashlib.sha256(presented.encode()).digest()
        return digest in self._cache or self._failed.get(digest, 0.0) > self._clock()

    def authenticate(self, presented: str | None) -> Principal:
        if not presented:
            raise Unauthenticated(
                "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            )
        digest = hashlib.sha256(presented.encode()).digest()
        if (hit := self._cache.get(digest)) is not None:
            return hit
        now = self._clock()
        if self._failed.get(digest, 0.0) > now:
            raise Unauthenticated("invalid API key")
        lookup_id, secret = _split(presented)
        rec = self._by_id.get(lookup_id)
        # An unknown id costs the same hash and compare, so timing does not tell ids apart.
        salt, expected = (rec.salt, rec.hashed) if rec else (_DUMMY_SALT, _DUMMY_HASH)
        self.hashes += 1
        ok = hmac.compare_digest(_hash(secret, salt), expected)
        if not (ok and rec):
            if len(self._failed) >= CACHE_SIZE:
                self._failed = {d: t for d, t in self._failed.items() if t > now}
                if len(self._failed) >= CACHE_SIZE:
                    self._failed.clear()
            self._failed[digest] = now + FAILED_TTL_S
            raise Unauthenticated("invalid API key")
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[digest] = rec.principal
        return rec.principal

    def authorize(self, principal: Principal, need_role: str) -> None:
        if not role_allows(principal.role, need_role):
            raise Forbidden(
                f"this route needs role {need_role!r}; key {principal.name!r} has role"
                f" {principal.role!r}",
                need_role=need_role,
                role=principal.role,
            )


# --- the keys file -------------------------------------------------------------------------


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        doc = json.loads(path.read_text())
        keys = doc["keys"]
        if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
            raise TypeError("'keys' is not a list of objects")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read API keys file {path}: {exc!r}") from exc
    return keys


def _write(path: Path, keys: list[dict[str, Any]]) -> None:
    """Replace ``path`` with ``keys``; callers hold :func:`_locked` (which made the folder)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    with os.fdopen(fd, "w") as f:
        json.dump({"keys": keys}, f, indent=2)
        f.flush()
        os.fsync(f.fileno())  # a crash leaves the old file or the new one, never half of one
    os.replace(tmp, path)
    path.chmod(0o600)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the keys file's lock for a read-modify-write: two writers at once (the CLI and an
    ingress, or two ingress replicas) would otherwise each write a list without the other's
    key. The lock is a sibling file (the keys file itself is replaced, never edited)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def add_key(path: Path, name: str, role: str) -> str:
    """Create a key and return it in clear: the only time it is shown."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {list(ROLES)}")
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"bad key name {name!r}: use letters, digits, '.', '_', '-' (<= 64)")
    with _locked(path):
        return _add_key(path, name, role)


def _add_key(path: Path, name: str, role: str) -> str:
    keys = _read(path) if path.exists() else []
    if any(k.get("name") == name for k in keys):
        raise ValueError(f"an API key named {name!r} already exists in {path}")
    taken = {k.get("id") for k in keys}
    key_id = secrets.token_hex(4)
    while key_id in taken:
        key_id = secrets.token_hex(4)
    secret, salt = secrets.token_urlsafe(32), secrets.token_bytes(16)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    record = {"id": key_id, "name": name, "role": role, "salt": salt.hex()}
    keys.append({**record, "hash": _hash(secret, salt).hex(), "created_at": created})
    _write(path, keys)
    return f"cs_{key_id}_{secret}"


def revoke_key(path: Path, name_or_id: str) -> bool:
    with _locked(path):
        keys = _read(path) if path.exists() else []
        kept = [k for k in keys if name_or_id not in (k.get("name"), k.get("id"))]
        if len(kept) == len(keys):
            return False
        _write(path, kept)
        return True


def list_keys(path: Path) -> list[dict[str, Any]]:
    keys = _read(path) if path.exists() else []
    return [{k: v for k, v in rec.items() if k not in ("salt", "hash")} for rec in keys]
