"""Who may do what: API keys and their roles, the auth policy, and the admin actions.

- ``keys``: API keys (``infer`` < ``operator`` < ``admin``), hashed at rest; the key store.
- ``policy``: the config's auth policy and the access check of one request.
- ``admin``: what the admin routes do (create/revoke keys, register a model version).
"""

from serving.access.keys import (
    ROLES,
    ApiKeyStore,
    Principal,
    add_key,
    list_keys,
    revoke_key,
    role_allows,
)
from serving.access.policy import (
    ANONYMOUS,
    AuthPolicy,
    allows,
    check_access,
    describe,
    is_loopback,
)

__all__ = [
    "ANONYMOUS",
    "ROLES",
    "ApiKeyStore",
    "AuthPolicy",
    "Principal",
    "add_key",
    "allows",
    "check_access",
    "describe",
    "is_loopback",
    "list_keys",
    "revoke_key",
    "role_allows",
]
