"""The audit trail: one record per served request, one per admin action, in one SQL database.

By default the database is ``<data_dir>/audit.db`` (SQLite); ``audit.database_url`` points
every ingress replica at a shared server instead (any SQLAlchemy URL). Several processes may
share a SQLite file: WAL lets readers run beside the writer, every write is one
``BEGIN IMMEDIATE`` transaction, and ``busy_timeout`` makes a writer wait for the lock instead
of failing.

Writes are idempotent: a request's id is its primary key and an admin record carries a uuid,
so a batch retried after an error that struck *after* the commit adds nothing twice. The
records themselves are plain values in :mod:`serving.audit.records`. Request bodies are kept
only with ``store_inputs`` on, as content-addressed files beside the database
(:class:`InputStore`).

Requests are written off the request path by :class:`serving.audit.writer.AuditWriter`.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from serving.audit.records import AdminRecord, AuditSpec, RequestRecord, sha256_hex
from serving.errors import BadRequest

BUSY_TIMEOUT_MS = 10_000
MAX_QUERY_LIMIT = 10_000
_IN_CHUNK = 500  # ids per IN (...) clause; far below every backend's parameter limit

# --- request bodies ------------------------------------------------------------------------


class InputStore:
    """Request bodies at ``<root>/<sha[:2]>/<sha>``, written once; mtime = last time seen."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha: str) -> Path:
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError(f"not a lowercase sha256 hex digest: {sha!r}")
        return self.root / sha[:2] / sha

    def put(self, sha: str, data: bytes) -> bool:
        """Store ``data`` under ``sha``; False (and a fresh mtime) when it was already there."""
        path = self.path(sha)
        if sha256_hex(data) != sha:
            raise ValueError(f"data of {len(data)} bytes does not hash to {sha!r}")
        if path.exists():
            # A new request references it: retention counts from now, so purge keeps it.
            os.utime(path)
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{sha}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # readers never see half a file; a racing writer wrote the same
        return True

    def get(self, sha: str) -> bytes | None:
        path = self.path(sha)
        return path.read_bytes() if path.exists() else None

    def purge(self, cutoff: float) -> int:
        """Delete bodies last seen before ``cutoff`` (epoch seconds); how many went."""
        if not self.root.is_dir():
            return 0
        removed = 0
        for path in self.root.glob("??/*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # another replica purged it first
                continue
        return removed


# --- the database --------------------------------------------------------------------------

_meta = sa.MetaData()

requests_table = sa.Table(
    "audit_requests",
    _meta,
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("caller", sa.String(256), nullable=False),
    sa.Column("route", sa.String(256), nullable=False),
    sa.Column("pipeline", sa.String(256)),
    sa.Column("input_sha256", sa.String(64)),
    sa.Column("input_bytes", sa.BigInteger),
    sa.Column("nodes", sa.Text, nullable=False),  # JSON
    sa.Column("output_summary", sa.Text, nullable=False),  # JSON
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("error_code", sa.String(128)),
    sa.Index("audit_requests_by_ts", "ts"),
    sa.Index("audit_requests_by_caller", "caller", "ts"),
)

# One row per (request, model) so "which requests did detector v3 serve" is an index range.
request_models_table = sa.Table(
    "audit_request_models",
    _meta,
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("version", sa.Integer),
    sa.Column("ts", sa.Float, nullable=False),  # copied from the request, for index and purge
    sa.Index("audit_request_models_by_version", "model", "version", "ts"),
)

admin_table = sa.Table(
    "audit_admin",
    _meta,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("action", sa.String(128), nullable=False),
    sa.Column("target", sa.String(512), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),  # JSON
    sa.Column("outcome", sa.String(128), nullable=False),
    sa.Index("audit_admin_by_ts", "ts"),
    sa.Index("audit_admin_by_action", "action", "ts"),
)


class AuditStore:
    """Audit records in any SQLAlchemy database (Core, no ORM); safe to share between threads."""

    def __init__(self, url: str, *, inputs: InputStore | None = None) -> None:
        self.inputs = inputs
        self._engine = sa.create_engine(url)
        self._sqlite = self._engine.dialect.name == "sqlite"
        if self._sqlite:
            database = self._engine.url.database
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            sa.event.listen(self._engine, "connect", _sqlite_pragmas)
            sa.event.listen(self._engine, "begin", _sqlite_begin)
        with self._write() as conn:
            _meta.create_all(conn)

    @property
    def url(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self._engine.connect() as conn:
            conn.execution_options(audit_write=True)  # -> BEGIN IMMEDIATE on SQLite
            with conn.begin():
                yield conn

    def close(self) -> None:
        self._engine.dispose()

    # --- writes ----------------------------------------------------------------------------

    def write_requests(self, records: list[RequestRecord]) -> int:
        """Insert the records in one transaction; ids already stored are skipped. New rows."""
        by_id: dict[str, RequestRecord] = {}
        for r in records:
            by_id.setdefault(r.request_id, r)
        if not by_id:
            return 0
        with self._write() as conn:
            known = self._existing(conn, requests_table.c.request_id, list(by_id))
            new = [r for rid, r in by_id.items() if rid not in known]
            if not new:
                return 0
            conn.execute(self._insert_ignore(requests_table), [_request_row(r) for r in new])
            models = [
                {"request_id": r.request_id, "model": m, "version": _int(n), "ts": r.ts}
                for r in new
                for m, n in r.nodes.items()
            ]
            if models:
                conn.execute(self._insert_ignore(request_models_table), models)
        return len(new)

    def write_admin(self, records: list[AdminRecord]) -> int:
        """Insert admin records in one transaction; ids already stored are skipped. New rows."""
        by_id: dict[str, AdminRecord] = {}
        for r in records:
            by_id.setdefault(r.id, r)
        if not by_id:
            return 0
        with self._write() as conn:
            known = self._existing(conn, admin_table.c.id, list(by_id))
            new = [r for rid, r in by_id.items() if rid not in known]
            if new:
                conn.execute(self._insert_ignore(admin_table), [_admin_row(r) for r in new])
        return len(new)

    @staticmethod
    def _existing(conn: sa.Connection, column: sa.Column[Any], ids: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            found.update(conn.scalars(sa.select(column).where(column.in_(chunk))))
        return found

    def _insert_ignore(self, table: sa.Table) -> Any:
        # The pre-check in the same transaction skips known ids; this covers a concurrent
        # writer inserting the same id in between (a retried batch on another replica).
        keys = [c.name for c in table.primary_key.columns]
        name = self._engine.dialect.name
        if name == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)
        if name == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)
        if name in ("mysql", "mariadb"):
            return sa.insert(table).prefix_with("IGNORE")
        return sa.insert(table)  # a race fails the batch; the writer's retry skips the dupes

    # --- reads -----------------------------------------------------------------------------

    def get_request(self, request_id: str) -> dict[str, Any] | None:
        query = sa.select(requests_table).where(requests_table.c.request_id == request_id)
        with self._engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return _request_dict(row) if row is not None else None

    def query_requests(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        model: str | None = None,
        version: int | None = None,
        caller: str | None = None,
        error_code: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Requests newest first; ``since`` inclusive, ``until`` exclusive (epoch seconds)."""
        _check_limit(limit)
        t = requests_table
        query = sa.select(t)
        ts = t.c.ts
        if model is not None:
            m = request_models_table
            query = query.join(m, m.c.request_id == t.c.request_id).where(m.c.model == model)
            ts = m.c.ts  # range on the (model, version, ts) index
            if version is not None:
                query = query.where(m.c.version == version)
        elif version is not None:
            raise BadRequest(f"version {version!r} given without a model", version=version)
        if since is not None:
            query = query.where(ts >= since)
        if until is not None:
            query = query.where(ts < until)
        if caller is not None:
            query = query.where(t.c.caller == caller)
        if error_code is not None:
            query = query.where(t.c.error_code == error_code)
        query = query.order_by(t.c.ts.desc(), t.c.request_id.desc()).limit(limit)
        with self._engine.connect() as conn:
            return [_request_dict(row) for row in conn.execute(query).mappings()]

    def query_admin(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Admin records newest first; ``since`` inclusive, ``until`` exclusive."""
        _check_limit(limit)
        t = admin_table
        query = sa.select(t)
        for column, value in ((t.c.actor, actor), (t.c.action, action), (t.c.target, target)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(t.c.ts >= since)
        if until is not None:
            query = query.where(t.c.ts < until)
        query = query.order_by(t.c.ts.desc(), t.c.id.desc()).limit(limit)
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings()
            return [{**row, "detail": json.loads(row["detail"])} for row in rows]

    # --- retention -------------------------------------------------------------------------

    def purge(self, older_than_days: float, now: float | None = None) -> dict[str, int]:
        """Delete everything recorded before ``now - older_than_days``; counts per kind."""
        if not older_than_days > 0:
            raise BadRequest(f"older_than_days must be > 0, got {older_than_days!r}")
        cutoff = (time.time() if now is None else now) - older_than_days * 86_400
        counts = {}
        with self._write() as conn:
            for name, table in (
                ("request_models", request_models_table),
                ("requests", requests_table),
                ("admin", admin_table),
            ):
                counts[name] = conn.execute(sa.delete(table).where(table.c.ts < cutoff)).rowcount
        counts["inputs"] = self.inputs.purge(cutoff) if self.inputs is not None else 0
        return counts


def open_store(spec: AuditSpec, data_dir: Path) -> AuditStore:
    url = spec.database_url or f"sqlite:///{Path(data_dir).resolve() / 'audit.db'}"
    return AuditStore(url, inputs=InputStore(Path(data_dir) / "audit_inputs"))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it, and a
    # deferred transaction that reads and then writes fails at once under a concurrent writer).
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL keeps the file consistent; one fsync less
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    write = conn.get_execution_options().get("audit_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_QUERY_LIMIT:
        raise BadRequest(f"limit must be in 1..{MAX_QUERY_LIMIT}, got {limit!r}", limit=limit)


def _dumps(doc: Any) -> str:
    # default=str: an odd value in a summary must not make the whole batch unwritable.
    return json.dumps(doc, sort_keys=True, default=str)


def _int(node: Any) -> int | None:
    try:
        return int(node["version"])
    except (KeyError, TypeError, ValueError):
        return None


def _request_row(r: RequestRecord) -> dict[str, Any]:
    return {**r.to_dict(), "nodes": _dumps(r.nodes), "output_summary": _dumps(r.output_summary)}


def _admin_row(r: AdminRecord) -> dict[str, Any]:
    return {**r.to_dict(), "detail": _dumps(r.detail)}


def _request_dict(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["nodes"] = json.loads(out["nodes"])
    out["output_summary"] = json.loads(out["output_summary"])
    return out
