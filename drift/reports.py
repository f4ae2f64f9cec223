"""Drift reports on disk: an index in SQLite, the Evidently HTML and JSON next to it.

A report is one comparison: a live window of a model version against its frozen reference
(``kind="reference"``), or, during a rollout, the challenger's shadow answers against the
champion's answers to the same requests (``"challenger_vs_champion"``) and the challenger's
window against its own reference (``"challenger_vs_reference"``).
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.errors import UnknownReport

KINDS = (
    "reference",
    "challenger_vs_champion",
    "challenger_vs_reference",
    "champion_vs_reference",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    kind TEXT NOT NULL,
    against TEXT NOT NULL,
    trigger TEXT NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL,
    drift_share REAL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_by_key ON reports (model, version, kind, created_at);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    report_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    record TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Report:
    id: str
    model: str
    version: str
    kind: str
    against: str  # "reference v3 (evaluation, 120 rows)", "champion v1 (paired)"
    trigger: str  # schedule | on_demand | rollout
    created_at: float
    verdict: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return str(self.verdict["status"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "kind": self.kind,
            "against": self.against,
            "trigger": self.trigger,
            "created_at": self.created_at,
            "status": self.status,
            "drift_share": self.verdict.get("drift_share"),
            "html_url": f"/v1/drift/reports/{self.id}",
            "verdict": self.verdict,
            **self.extra,
        }


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """A report's verdict in a few fields: what ``drift status`` and a rollout's evidence show."""
    verdict = report["verdict"]
    return {
        "report_id": report["id"],
        "status": verdict["status"],
        "drift_share": verdict["drift_share"],
        "drifted_features": verdict["drifted_features"],
        "drifted_groups": verdict.get("drifted_groups", []),
        "reference_rows": verdict["reference_rows"],
        "current_rows": verdict["current_rows"],
        "against": report["against"],
    }


def new_report_id(model: str, version: str, kind: str) -> str:
    return f"{model}-v{version}-{kind.replace('_', '-')}-{uuid.uuid4().hex[:10]}"


class ReportStore:
    def __init__(self, db_path: str | Path | None, files_dir: Path) -> None:
        self.files_dir = Path(files_dir)
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            ":memory:" if db_path is None else str(db_path), check_same_thread=False, timeout=30
        )
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.executescript(_SCHEMA)

    def html_path(self, report_id: str) -> Path:
        return self.files_dir / f"{report_id}.html"

    def json_path(self, report_id: str) -> Path:
        return self.files_dir / f"{report_id}.json"

    def save(self, report: Report) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO reports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    report.id,
                    report.model,
                    report.version,
                    report.kind,
                    report.against,
                    report.trigger,
                    report.created_at,
                    report.status,
                    report.verdict.get("drift_share"),
                    json.dumps(report.to_dict()),
                ),
            )

    def get(self, report_id: str) -> dict[str, Any]:
        with self._lock:
            row = self._db.execute("SELECT record FROM reports WHERE id=?", (report_id,)).fetchone()
        if row is None:
            raise UnknownReport(f"drift report {report_id!r} does not exist")
        return dict(json.loads(row[0]))

    def html(self, report_id: str) -> str:
        self.get(report_id)
        path = self.html_path(report_id)
        if not path.is_file():
            raise UnknownReport(f"drift report {report_id!r} has no HTML (not enough rows?)")
        return path.read_text(encoding="utf-8")

    def list(
        self,
        *,
        model: str | None = None,
        version: str | None = None,
        kind: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        sql, args = "SELECT record FROM reports WHERE 1=1", []
        for column, value in (("model", model), ("version", version), ("kind", kind)):
            if value is not None:
                sql += f" AND {column}=?"
                args.append(str(value))
        sql += " ORDER BY created_at DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, [*args, max(0, limit)]).fetchall()
        return [json.loads(r[0]) for r in rows]

    def latest(self, kind: str = "reference") -> builtins.list[dict[str, Any]]:
        """The newest report of ``kind`` per (model, version)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT r.record FROM reports r JOIN (SELECT model, version, MAX(created_at) m "
                "FROM reports WHERE kind=? GROUP BY model, version) x "
                "ON r.model=x.model AND r.version=x.version AND r.created_at=x.m "
                "WHERE r.kind=? ORDER BY r.model, r.version",
                (kind, kind),
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def add_alert(self, alert: dict[str, Any]) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO alerts (model, version, report_id, created_at, record) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    alert["model"],
                    str(alert["version"]),
                    alert["report_id"],
                    float(alert["created_at"]),
                    json.dumps(alert),
                ),
            )

    def alerts(self, limit: int = 20) -> builtins.list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT record FROM alerts ORDER BY created_at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def prune(self, older_than_s: float, now: float | None = None) -> int:
        """Delete reports (and their files) and alerts older than the cutoff."""
        cutoff = (now if now is not None else time.time()) - older_than_s
        with self._lock, self._db:
            ids = [
                r[0]
                for r in self._db.execute(
                    "SELECT id FROM reports WHERE created_at < ?", (cutoff,)
                ).fetchall()
            ]
            self._db.execute("DELETE FROM reports WHERE created_at < ?", (cutoff,))
            self._db.execute("DELETE FROM alerts WHERE created_at < ?", (cutoff,))
        for rid in ids:
            self.html_path(rid).unlink(missing_ok=True)
            self.json_path(rid).unlink(missing_ok=True)
        return len(ids)
