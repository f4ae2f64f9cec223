"""Audit values: the config, the record types and the hashes that keep raw keys out of them.

These are plain values (a pydantic spec, frozen dataclasses, a TypedDict) with no I/O, so the
request path builds records without touching SQLAlchemy, and the store and the writer share
one definition of what a record is.

Records never hold a raw routing key or client address used for sticky routing, only
:func:`sticky_key_hash` of it. An admin record carries a uuid and a request record its request
id; both are primary keys, which is what makes a retried write idempotent.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving.canary.split import key_hash


class AuditSpec(BaseModel):
    """The ``audit`` config section: where records go, how long they stay, how they batch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; None = sqlite file <data_dir>/audit.db"
    )
    retention_days: float = Field(default=30, gt=0)
    store_inputs: bool = Field(default=False, description="Keep request bodies (by sha256).")
    batch_size: int = Field(default=200, ge=1)
    flush_interval_s: float = Field(default=0.5, gt=0)
    max_pending: int = Field(default=10_000, ge=1, description="Records queued before dropping.")
    max_pending_input_mb: float = Field(
        default=256, gt=0, description="Request bodies queued before dropping (store_inputs)."
    )

    @model_validator(mode="after")
    def _batch_fits(self) -> AuditSpec:
        if self.batch_size > self.max_pending:
            raise ValueError(
                f"batch_size ({self.batch_size}) > max_pending ({self.max_pending}): "
                "a batch could never fill"
            )
        return self


class NodeEntry(TypedDict):
    """How one model of a request was routed (``RequestRecord.nodes[model]``)."""

    version: int
    arm: str
    weight: float
    sticky_key_hash: str | None
    pinned: bool
    shadowed: bool
    fallback: bool


@dataclass(frozen=True, kw_only=True)
class RequestRecord:
    request_id: str
    ts: float  # epoch seconds
    caller: str  # API key name or client address
    route: str  # "pipeline:inspect", "model:detector"
    pipeline: str | None = None
    input_sha256: str | None = None
    input_bytes: int | None = None
    nodes: dict[str, NodeEntry] = field(default_factory=dict)
    output_summary: dict[str, Any] = field(default_factory=dict)
    latency_ms: float = 0.0
    status: int = 200
    error_code: str | None = None  # None when the request succeeded

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class AdminRecord:
    ts: float
    actor: str
    action: str  # "rollout.start", "model.register", "keys.add", ...
    target: str  # a rollout id, "detector/3", a key name
    detail: dict[str, Any] = field(default_factory=dict)
    outcome: str = "ok"  # or the error code
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sha256_hex(data: bytes) -> str:
    """The digest a request body is recorded and stored under."""
    return hashlib.sha256(data).hexdigest()


def sticky_key_hash(key: str | None) -> str | None:
    """The first 16 hex chars of the key's sha256: the audit never stores the raw key or IP."""
    return None if key is None else key_hash(key)


def node_entry(
    version: int,
    arm: str,
    weight: float,
    *,
    sticky_key: str | None = None,
    pinned: bool = False,
    shadowed: bool = False,
    fallback: bool = False,
) -> NodeEntry:
    """A ``nodes`` value; takes the raw sticky key and keeps only its hash."""
    return NodeEntry(
        version=version,
        arm=arm,
        weight=weight,
        sticky_key_hash=sticky_key_hash(sticky_key),
        pinned=pinned,
        shadowed=shadowed,
        fallback=fallback,
    )
