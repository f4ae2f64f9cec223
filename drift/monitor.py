"""The drift monitor: takes captured rows, keeps windows, runs reports, raises alerts.

``DriftMonitor`` is plain Python (references, champions, clock and alert delivery are injected)
so it is testable without Ray. ``MonitorActor`` is the Ray actor around it: one per cluster,
named, restarted by Ray, with everything it acknowledged in SQLite under the data dir.

Reports:
- scheduled: per live (model, version), every ``report_every_rows`` new rows, or every
  ``report_interval_s`` when any row came in, against the version's frozen reference;
- on demand (API/CLI);
- during a rollout (for the ``prediction_drift`` check): the challenger's shadow answers
  against the champion's answers to the same requests, and the challenger's and champion's
  windows against their own references.
Champion drift raises an alert (log, metric, optional webhook) and never rolls anything back;
``drift.alerts`` says which drifting reports may raise one. A version without a reference for
the current feature set gets reports with status ``no_reference``, never ``drift``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from drift.alerts import AlertGate, Window, champion_alert
from drift.evidently_adapter import WorkspaceTarget, compute_drift
from drift.features import FEATURES_VERSION
from drift.reference.baseline import BaselineRequest, traffic_frame, window_start
from drift.reports import Report, ReportStore, new_report_id, summary
from drift.rows import PRED_PREFIX
from drift.statistics import feature_columns
from drift.verdict import DriftVerdict
from drift.windows import META_KEYS, TS_COLUMN, WindowStore
from serving.config import DriftSpec
from serving.errors import CanaryError, NoReference, RegistryError
from serving.rollouts.evidence import DriftComparison, DriftEvidence

log = logging.getLogger("canaryserve.drift")
MONITOR_NAME = "canaryserve-drift"
REFERENCE_TTL_S = 60.0
# A champion's live row for a request is written a little before the challenger's shadow row.
PAIR_SLACK_S = 300.0

References = Callable[[str, int], "tuple[dict[str, Any], pd.DataFrame] | None"]
# (model, version, rows, source, record fields) -> the frozen reference's record
Freeze = Callable[[str, int, pd.DataFrame, str, dict[str, Any]], dict[str, Any]]
Observer = Callable[[str, dict[str, Any]], None]


def _comparison(report: dict[str, Any]) -> DriftComparison:
    return DriftComparison.model_validate(summary(report))


class DriftMonitor:
    def __init__(
        self,
        spec: DriftSpec,
        root: Path,
        *,
        references: References,
        champions: Callable[[], dict[str, int]],
        clock: Callable[[], float] = time.time,
        notify: Callable[[dict[str, Any]], None] | None = None,
        observe: Observer | None = None,
        freeze: Freeze | None = None,
    ) -> None:
        self.spec = spec
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.windows = WindowStore(
            self.root / "drift.db",
            retention_days=spec.retention_days,
            max_rows_per_window=spec.max_rows_per_window,
            clock=lambda: datetime.fromtimestamp(self.clock(), UTC),
        )
        self.reports = ReportStore(self.root / "drift.db", self.root / "reports")
        self.workspace_dir = self.root / "workspace"
        self._references = references
        self._freeze = freeze
        self._champions = champions
        self._notify = notify
        self._observe = observe or (lambda kind, data: None)
        self._new: dict[tuple[str, str], int] = defaultdict(int)
        started = self.clock()
        self._last: dict[tuple[str, str], float] = defaultdict(lambda: started)
        self._refs: dict[tuple[str, int], tuple[float, Any]] = {}
        self._rollout_cache: dict[
            tuple[str, int, int, float], tuple[float, tuple[int, int], DriftEvidence]
        ] = {}
        self._gate = AlertGate(spec.alert_cooldown_s)
        # Newest row each version's last scheduled report judged: the next one starts after it.
        self._scheduled_until: dict[tuple[str, str], float] = {}
        self._lock = threading.RLock()
        self.ingested = 0

    # --- rows ------------------------------------------------------------------------------

    def ingest(self, rows: list[dict[str, Any]]) -> int:
        """Persist rows; once this returns they survive a restart (acknowledged)."""
        n = self.windows.ingest(rows)
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        for row in rows:
            key = (str(row["model"]), str(row["version"]), str(row.get("source", "live")))
            counts[key] += 1
        with self._lock:
            for (model, version, source), k in counts.items():
                if source == "live":
                    self._new[(model, version)] += k
                self._observe(
                    "rows", {"model": model, "version": version, "source": source, "n": k}
                )
            self.ingested += n
        return n

    # --- references ------------------------------------------------------------------------

    def reference(self, model: str, version: int) -> tuple[dict[str, Any], pd.DataFrame]:
        key = (model, int(version))
        now = self.clock()
        cached = self._refs.get(key)
        if cached is None or now - cached[0] > REFERENCE_TTL_S:
            got = self._references(model, int(version))
            cached = (now, got)
            self._refs[key] = cached
        if cached[1] is None:
            raise NoReference(f"{model} v{version} has no frozen drift reference in the registry")
        made_with = cached[1][0].get("features", 1)
        if made_with != FEATURES_VERSION:
            # Rows from other feature definitions would "drift" for no reason the client caused.
            raise NoReference(
                f"{model} v{version}'s drift reference was computed with feature set "
                f"v{made_with}; capture uses v{FEATURES_VERSION}. Freeze a new one "
                "(bootstrap does this for the reference models)."
            )
        return cached[1]

    def forget_reference(self, model: str, version: int) -> None:
        self._refs.pop((model, int(version)), None)

    # --- reports ---------------------------------------------------------------------------

    def report(
        self,
        model: str,
        version: int | str,
        *,
        trigger: str = "on_demand",
        since: float | None = None,
    ) -> dict[str, Any]:
        """The newest ``window_rows`` live rows of a version (newer than ``since``, if given,
        and captured after its reference was frozen) against that reference; status
        ``no_reference`` when it has none to compare to."""
        try:
            record, ref = self.reference(model, int(version))
        except NoReference as e:
            current = self.windows.frame(model, version, since=since, last=self.spec.window_rows)
            verdict = DriftVerdict("no_reference", 0, len(current), reason=e.message).to_dict()
            rid = new_report_id(model, str(version), "reference")
            now = self.clock()
            report = Report(rid, model, str(version), "reference", "none", trigger, now, verdict)
            if trigger == "on_demand":  # a scheduled one would repeat it at every tick
                self.reports.save(report)
            return report.to_dict()
        since = window_start(record, since)
        current = self.windows.frame(model, version, since=since, last=self.spec.window_rows)
        against = f"reference #{record.get('n', 1)} ({record.get('source')}, {len(ref)} rows)"
        out = self._compare(
            model, str(version), "reference", ref, current, against=against, trigger=trigger
        )
        if out["verdict"]["status"] == "drift":
            ts = current[TS_COLUMN]
            self._maybe_alert(
                model, str(version), out, Window(ts.min().timestamp(), ts.max().timestamp())
            )
        return out

    # --- baselines ---------------------------------------------------------------------------

    def traffic_baseline(self, request: BaselineRequest) -> pd.DataFrame:
        """The rows a traffic baseline freezes (``drift.reference.baseline.traffic_frame``)."""
        return traffic_frame(self.windows, request, now=self.clock(), min_rows=self.spec.min_rows)

    def freeze_baseline(
        self, request: BaselineRequest, frame: pd.DataFrame, detail: dict[str, Any]
    ) -> dict[str, Any]:
        """Freeze ``frame`` as the version's reference and start its fresh current window."""
        if self._freeze is None:
            raise RegistryError("this drift monitor has no registry to freeze a baseline in")
        now = self.clock()
        meta = {"baseline": request.described, "current_since": now, **detail}
        record = self._freeze(request.model, request.version, frame, request.source, meta)
        key = (request.model, str(request.version))
        with self._lock:
            self.forget_reference(request.model, request.version)
            self._scheduled_until[key] = now
            self._new[key] = 0
        self._observe("baseline", {"model": request.model, "version": str(request.version)})
        return {"model": request.model, "version": request.version, "reference": record}

    def _compare(
        self,
        model: str,
        version: str,
        kind: str,
        reference: pd.DataFrame,
        current: pd.DataFrame,
        *,
        against: str,
        trigger: str,
        prediction_only: bool = False,
        min_rows: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        from drift.embeddings import embedding_columns

        rid = new_report_id(model, version, kind)
        cols = feature_columns(
            reference,
            current,
            skip=(*META_KEYS, TS_COLUMN),
            prefix=PRED_PREFIX if prediction_only else None,
        )
        # One hypothesis for all emb_ columns (compute_drift); none when only predictions are
        # compared (challenger vs champion: the same inputs).
        shared = [c for c in reference.columns if c in current.columns]
        emb = [] if prediction_only else embedding_columns(shared)
        need = min_rows if min_rows is not None else self.spec.min_rows
        if not cols or len(reference) < need or len(current) < need:
            verdict = DriftVerdict(
                status="insufficient_data",
                reference_rows=len(reference),
                current_rows=len(current),
                drift_share_threshold=self.spec.drift_share,
                reason=f"need {need} rows on each side and a shared feature column",
            ).to_dict()
        else:
            verdict = compute_drift(
                reference[[*cols, *emb]],
                current[[*cols, *emb]],
                columns=cols,
                embedding=emb,
                min_rows=need,
                drift_share=self.spec.drift_share,
                method=self.spec.method,
                threshold=self.spec.threshold,
                groups={
                    "input": [c for c in cols if not c.startswith(PRED_PREFIX)],
                    "prediction": [c for c in cols if c.startswith(PRED_PREFIX)],
                    "embedding": emb,
                },
                html_path=self.reports.html_path(rid),
                json_path=self.reports.json_path(rid),
                workspace=WorkspaceTarget(
                    self.workspace_dir, f"canaryserve {model}", f"{model} v{version} {kind}"
                ),
            ).to_dict()
        report = Report(
            rid, model, version, kind, against, trigger, self.clock(), verdict, extra or {}
        )
        # Scheduled and rollout reports without a verdict are not kept: they would bury the
        # useful ones. An on-demand request gets its answer (and reason) either way.
        if verdict["status"] != "insufficient_data" or trigger == "on_demand":
            self.reports.save(report)
        out = report.to_dict()
        if verdict["status"] != "insufficient_data":
            self._observe("report", out)
        return out

    def due(self) -> list[tuple[str, str]]:
        now = self.clock()
        with self._lock:
            return [
                key
                for key, new in self._new.items()
                if new >= self.spec.report_every_rows
                or (new > 0 and now - self._last[key] >= self.spec.report_interval_s)
            ]

    def run_scheduled(self) -> list[dict[str, Any]]:
        """Reports for the versions that are due, each on rows newer than its previous
        scheduled window (disjoint windows: see ``drift.alerts``)."""
        done = []
        for model, version in self.due():
            since = self._scheduled_until.get((model, version))
            # Rows stamped exactly at the last window's newest row were judged with it.
            after = None if since is None else since + 1e-6
            if self.windows.count(model, version, since=after) < self.spec.min_rows:
                continue  # keep counting; a report needs min_rows first
            with self._lock:
                self._new[(model, version)] = 0
                self._last[(model, version)] = self.clock()
            try:
                out = self.report(model, version, trigger="schedule", since=after)
            except Exception:
                log.exception("scheduled drift report of %s v%s failed", model, version)
                continue
            if out["verdict"]["status"] == "no_reference":
                log.info("no scheduled drift report: %s", out["verdict"]["reason"])
                continue
            newest = self.windows.frame(model, version, since=after, last=1)[TS_COLUMN]
            self._scheduled_until[(model, version)] = newest.max().timestamp()
            done.append(out)
        return done

    def prune(self) -> dict[str, int]:
        return {
            "rows": self.windows.prune(),
            "reports": self.reports.prune(self.spec.retention_days * 86400, now=self.clock()),
        }

    # --- rollouts ----------------------------------------------------------------------------

    def rollout_drift(
        self, model: str, champion: int, challenger: int, since: float, min_rows: int
    ) -> DriftEvidence:
        """What the ``prediction_drift`` check judges, for the rollout window since ``since``."""
        key = (model, int(champion), int(challenger), float(since))
        shadow = self.windows.frame(model, challenger, source="shadow", since=since)
        live = self.windows.frame(model, challenger, since=since)
        counts = (len(shadow), len(live))
        now = self.clock()
        cached = self._rollout_cache.get(key)
        if cached is not None and (
            cached[1] == counts or now - cached[0] < self.spec.rollout_eval_interval_s
        ):
            return cached[2]
        found: dict[str, Any] = {"pairs": 0}
        if len(shadow):
            champ = self.windows.frame(
                model, champion, since=since - PAIR_SLACK_S, request_ids=shadow["request_id"]
            )
            champ = champ.drop_duplicates("request_id", keep="last").set_index("request_id")
            mine = shadow.drop_duplicates("request_id", keep="last").set_index("request_id")
            both = champ.index.intersection(mine.index)
            found["pairs"] = len(both)
            found["vs_champion"] = _comparison(
                self._compare(
                    model,
                    str(challenger),
                    "challenger_vs_champion",
                    champ.loc[both].reset_index(),
                    mine.loc[both].reset_index(),
                    against=f"champion v{champion} on the same {len(both)} requests",
                    trigger="rollout",
                    prediction_only=True,
                    min_rows=min_rows,
                )
            )
        answers = pd.concat([live, shadow], ignore_index=True) if len(shadow) else live
        for name, kind, version, frame in (
            ("vs_reference", "challenger_vs_reference", challenger, answers),
            (
                "champion_vs_reference",
                "champion_vs_reference",
                champion,
                self.windows.frame(model, champion, since=since),
            ),
        ):
            try:
                record, ref = self.reference(model, version)
            except NoReference:
                continue
            found[name] = _comparison(
                self._compare(
                    model,
                    str(version),
                    kind,
                    ref,
                    frame,
                    against=f"reference #{record.get('n', 1)} of v{version}",
                    trigger="rollout",
                    prediction_only=True,
                    min_rows=min_rows,
                )
            )
        out = DriftEvidence.model_validate(found)
        self._rollout_cache[key] = (now, counts, out)
        return out

    # --- alerts ------------------------------------------------------------------------------

    def _maybe_alert(
        self, model: str, version: str, report: dict[str, Any], window: Window
    ) -> None:
        try:
            champion = self._champions().get(model)
        except Exception as e:
            log.warning("cannot read champions for drift alerts: %r", e)
            return
        if champion is None or str(champion) != version:
            return  # challengers are judged by their rollout, not alerted on
        now = self.clock()
        if not self._gate.admit((model, version), window, now):
            return  # the same rows raised an alert already, or the cooldown runs
        alert = champion_alert(report, now)
        verdict = report["verdict"]
        self.reports.add_alert(alert)
        self._observe("alert", alert)
        log.warning(
            "champion drift: %s v%s drift share %.2f (%s); report %s",
            model,
            version,
            verdict["drift_share"],
            ", ".join(verdict["drifted_features"]),
            report["id"],
        )
        if self._notify is not None:
            self._notify(alert)

    # --- views -------------------------------------------------------------------------------

    def _reference_summary(self, model: str, version: str) -> dict[str, Any] | None:
        """What the version's reports compare against now (None: nothing to compare to)."""
        try:
            record, ref = self.reference(model, int(version))
        except (CanaryError, ValueError):  # none, or the registry is down: status still answers
            return None
        keys = ("n", "source", "baseline", "current_since", "created_at")
        return {k: record[k] for k in keys if k in record} | {"rows": len(ref)}

    def list_reports(self, **filters: Any) -> list[dict[str, Any]]:
        return self.reports.list(**filters)

    def get_report(self, report_id: str) -> dict[str, Any]:
        return self.reports.get(report_id)

    def report_html(self, report_id: str) -> str:
        return self.reports.html(report_id)

    def status(self) -> dict[str, Any]:
        """Latest verdict per model version, recent alerts, and row counts."""
        latest = {(r["model"], r["version"]): r for r in self.reports.latest("reference")}
        versions = []
        for key in self.windows.keys():
            r = latest.get((key.model, key.version))
            versions.append(
                {
                    "model": key.model,
                    "version": key.version,
                    "rows": self.windows.count(key.model, key.version),
                    "latest": summary(r) | {"created_at": r["created_at"]} if r else None,
                    "features": r["verdict"]["features"] if r else [],
                    "reference": self._reference_summary(key.model, key.version),
                }
            )
        return {"versions": versions, "alerts": self.reports.alerts(), "ingested": self.ingested}
