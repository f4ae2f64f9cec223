"""Who may call a route: the auth policy from the config, the presented key, loopback rules.

With auth disabled (the local default) inference is open, and operator/admin routes answer only
to loopback clients. Behind a reverse proxy on the same host every client looks local: enable
auth there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from serving.access.keys import DEFAULT_KEYS_FILE, ApiKeyStore, Principal, role_allows
from serving.errors import ConfigError, Forbidden, Unauthenticated


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or else ``X-API-Key: <key>``."""
    bearer = api_key = None
    for header, value in headers.items():
        header = header.lower()
        if header == "authorization":
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = token.strip()
        elif header == "x-api-key" and value.strip():
            api_key = value.strip()
    return bearer or api_key


class AuthPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=False, description="Require an API key on every route.")
    keys_file: str | None = Field(
        default=None, description="JSON keys file; a relative path is under the data dir."
    )
    admin_loopback_only_when_disabled: bool = Field(
        default=True, description="With auth off, operator/admin routes answer only on loopback."
    )
    failure_burst: int = Field(
        default=10,
        ge=1,
        description="Invalid keys a client may present before it is refused with 429 "
        "too_many_auth_failures (each costs the server a PBKDF2 hash).",
    )
    failure_rate_per_s: float = Field(
        default=1.0, gt=0, description="How fast a client's allowance of invalid keys refills."
    )

    def keys_path(self, data_dir: Path) -> Path | None:
        return None if self.keys_file is None else data_dir / Path(self.keys_file).expanduser()

    def keys_file_in(self, data_dir: Path) -> Path:
        """Where keys live: ``keys_file``, else ``<data_dir>/api_keys.json`` (``keys add``)."""
        return self.keys_path(data_dir) or data_dir / DEFAULT_KEYS_FILE


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address((host or "").strip("[]"))
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


ANONYMOUS = Principal(name="anonymous", role="admin", key_id=None)


def check_access(
    policy: AuthPolicy,
    store: ApiKeyStore | None,
    headers: Mapping[str, str],
    client_host: str | None,
    need_role: str,
) -> Principal:
    """The caller of a route that needs ``need_role``, or Unauthenticated / Forbidden."""
    if policy.enabled:
        if store is None:
            raise ConfigError("auth is enabled but no API key store was loaded")
        principal = store.authenticate(presented_key(headers))
        store.authorize(principal, need_role)
        return principal
    if (
        not role_allows("infer", need_role)
        and policy.admin_loopback_only_when_disabled
        and not is_loopback(client_host)
    ):
        raise Forbidden(
            f"auth is disabled, so {need_role!r} routes answer only on loopback"
            f" (client {client_host!r}); enable auth to call them remotely",
            need_role=need_role,
        )
    key = presented_key(headers)
    if store is not None and key:
        try:  # a valid key only names the caller in the audit log; a bad one is ignored
            known = store.authenticate(key)
            return Principal(name=known.name, role=ANONYMOUS.role, key_id=known.key_id)
        except Unauthenticated:
            pass
    return ANONYMOUS


def allows(
    policy: AuthPolicy, principal: Principal, client_host: str | None, need_role: str
) -> bool:
    """May ``principal`` (whom :func:`check_access` let in) also do what ``need_role`` allows?
    The same rules, as a yes/no: with auth on, the key's role; with auth off, the loopback rule
    for anything above ``infer``."""
    if not role_allows(principal.role, need_role):
        return False
    if policy.enabled or role_allows("infer", need_role):
        return True
    return not policy.admin_loopback_only_when_disabled or is_loopback(client_host)


def describe(policy: AuthPolicy, store: ApiKeyStore | None) -> str:
    if not policy.enabled:
        if policy.admin_loopback_only_when_disabled:
            return "auth: disabled (local default); admin routes answer only on loopback"
        return "auth: disabled; admin routes answer on every interface"
    if store is None or not len(store):
        return "auth: enabled, 0 keys: every request will be refused"
    counts = ", ".join(f"{n} {role}" for role, n in store.role_counts().items())
    return f"auth: enabled, {len(store)} keys ({counts}) from {', '.join(store.sources)}"
