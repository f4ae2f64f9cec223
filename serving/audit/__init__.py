"""The audit trail: one record per served request and per admin action.

- ``records``: the plain values: the config section, the request and admin records, and the
  hashes that keep raw sticky keys out of them.
- ``store``: the SQLAlchemy store (SQLite by default, any database URL) and the
  content-addressed input store.
- ``writer``: the batched writer that keeps the database off the request path.
"""

from serving.audit.records import (
    AdminRecord,
    AuditSpec,
    RequestRecord,
    node_entry,
    sha256_hex,
    sticky_key_hash,
)
from serving.audit.store import AuditStore, InputStore, open_store
from serving.audit.writer import AuditWriter

__all__ = [
    "AdminRecord",
    "AuditSpec",
    "AuditStore",
    "AuditWriter",
    "InputStore",
    "RequestRecord",
    "node_entry",
    "open_store",
    "sha256_hex",
    "sticky_key_hash",
]
