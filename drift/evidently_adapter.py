"""The one module that imports Evidently: run a data-drift report, return a :class:`DriftVerdict`.

Uses the Evidently >= 0.7 API (``evidently.Report`` + ``evidently.presets.DataDriftPreset``),
whose snapshot holds one ``DriftedColumnsCount`` (count and share of drifted columns) and one
``ValueDrift`` per column (score, resolved method and threshold, and a pass/fail test). We read
those back into plain dataclasses so nothing outside this module sees Evidently types. Which
test each column gets, and which columns count as drifted, is decided by ``drift.statistics``.

Embedding columns (``emb_``) are one hypothesis there (an MMD permutation test, reported as the
feature ``embedding``); Evidently's own ``EmbeddingsDrift`` (MMD, bootstrap) is added to the
report so the HTML shows the embeddings too, but it decides nothing. Evidently 0.7's MMD has no
NaN handling, so its panel is only added when every row on both sides carries an embedding
(references, windows captured at ``embedding_sample_rate`` 1); the verdict's test drops the
rows without one and runs either way.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.metric_types import SingleValue
from evidently.legacy.metrics.data_drift.embedding_drift_methods import MMDDriftMethod
from evidently.metrics import EmbeddingsDrift
from evidently.presets import DataDriftPreset

from drift import statistics as stats
from drift.embeddings import EMB_PREFIX, embedding_columns
from drift.statistics import ALPHA
from drift.verdict import DriftVerdict, FeatureDrift

_VALUE_DRIFT_TYPE = "evidently:metric_v2:ValueDrift"
_EMBEDDINGS = "image"  # the embeddings' name in Evidently's DataDefinition and report

# Evidently names methods by display name; these are statistical tests whose score is a p-value
# (drift when score < threshold). Everything else (Wasserstein, Jensen-Shannon, PSI, KL,
# Hellinger, TVD, energy distance, ...) is a distance (drift when score >= threshold).
_P_VALUE_METHODS = frozenset(
    {
        "K-S p_value",
        "chi-square p_value",
        "Z-test p_value",
        "Anderson-Darling",
        "Cramer-von Mises",
        "Epps-Singleton",
        "Fisher's Exact test",
        "g_test",
        "Mann-Whitney U-rank test",
        "t_test",
    }
)


def is_p_value_method(method: str) -> bool:
    return method in _P_VALUE_METHODS or "p_value" in method


def default_columns(reference: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """Columns present on both sides that Evidently can compare: numbers, bools, labels.

    Datetimes (the window's ``ts``) are left out: time always "drifts"; so are embedding
    columns, which are tested together, not one by one.
    """
    shared = [
        c for c in reference.columns if c in current.columns and not str(c).startswith(EMB_PREFIX)
    ]
    return [
        c
        for c in shared
        if not pd.api.types.is_datetime64_any_dtype(reference[c])
        and not pd.api.types.is_timedelta64_dtype(reference[c])
    ]


def _data_definition(
    frame: pd.DataFrame, columns: Sequence[str], embedding: Sequence[str] = ()
) -> DataDefinition:
    # Explicit types: Evidently would otherwise guess, and an int column with few values
    # (width, count) would be tested as categorical in one window and numerical in the next.
    numerical = [
        c
        for c in columns
        if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
    ]
    categorical = [c for c in columns if c not in numerical]
    return DataDefinition(
        numerical_columns=numerical,
        categorical_columns=categorical,
        embeddings={_EMBEDDINGS: list(embedding)} if embedding else None,
    )


def _failed(result: Any) -> bool:
    return any(getattr(t.status, "value", t.status) == "FAIL" for t in result.tests)


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: list[str] | None = None,
    min_rows: int = 30,
    drift_share: float = 0.5,
    method: str | None = None,
    threshold: float | None = None,
    alpha: float = ALPHA,
    html_path: str | Path | None = None,
    json_path: str | Path | None = None,
    workspace: WorkspaceTarget | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    embedding: Sequence[str] | None = None,
) -> DriftVerdict:
    """Compare ``current`` against ``reference`` column by column.

    By default (``method=None``) each column's test is chosen by sample size and the family of
    columns is judged at a false-alarm rate of ``alpha`` per report (:mod:`drift.statistics`: K-S
    p-values with Holm's correction for small samples, normed Wasserstein distances against
    thresholds calibrated on the reference for large ones); Evidently computes every score and
    renders the report. The window drifts when any column is rejected; with ``groups`` (input
    vs prediction vs embedding columns) ``group_shares`` says which part of the row moved.
    ``embedding`` columns (default: the ``emb_`` columns both frames have) are judged together
    as one hypothesis of the family (``drift.statistics.embedding_hypothesis``), when both sides
    have enough embedded rows; ``columns`` never test them one by one.

    With ``method`` (and ``threshold``) Evidently's own per-column test decides each column and
    the window drifts when the share of drifted columns (per group, if any) reaches
    ``drift_share``: no correction for testing many columns, kept for explicit configs.
    With fewer than ``min_rows`` rows on either side Evidently is not run, no report is written,
    and the status is ``insufficient_data``. The HTML/JSON reports are written when paths are
    given; the snapshot is added to ``workspace`` (an Evidently workspace project, browsable with
    ``evidently ui --workspace <dir>``) when one is given.
    """
    if min_rows < 1:
        raise ValueError(f"min_rows has value {min_rows!r}. Expected at least 1.")
    if not 0.0 < drift_share <= 1.0:
        raise ValueError(f"drift_share has value {drift_share!r}. Expected 0 < drift_share <= 1.")
    cols = list(columns) if columns is not None else default_columns(reference, current)
    shared = [c for c in reference.columns if c in current.columns]
    emb = list(embedding) if embedding is not None else embedding_columns(shared)
    cols = [c for c in cols if not str(c).startswith(EMB_PREFIX)]
    missing = [c for c in [*cols, *emb] if c not in reference.columns or c not in current.columns]
    if missing:
        raise ValueError(f"Columns {missing!r} are missing from the reference or current data.")
    if not cols:
        raise ValueError("No columns to compare: reference and current share no feature column.")

    n_ref, n_cur = len(reference), len(current)
    if n_ref < min_rows or n_cur < min_rows:
        return DriftVerdict(
            status="insufficient_data",
            reference_rows=n_ref,
            current_rows=n_cur,
            drift_share_threshold=drift_share,
            reason=f"need {min_rows} rows on each side, have reference={n_ref} current={n_cur}",
        )

    family = method is None
    hypothesis = (
        stats.embedding_hypothesis(reference, current, emb, family=len(cols) + 1, alpha=alpha)
        if family
        else None
    )
    extra = [hypothesis] if hypothesis is not None else []
    methods, thresholds = (
        stats.plan(reference, current, cols, alpha, extra=len(extra)) if family else ({}, {})
    )
    if family:
        preset = DataDriftPreset(
            columns=cols,
            drift_share=drift_share,
            per_column_method={c: stats.EVIDENTLY_METHODS[m] for c, m in methods.items()},
            # Evidently's own pass/fail (shown in its HTML) at the Bonferroni level; the verdict
            # is Holm's, which rejects at least as much.
            per_column_threshold={
                c: thresholds.get(c, alpha / (len(cols) + len(extra))) for c in cols
            },
        )
    else:
        preset = DataDriftPreset(
            columns=cols, drift_share=drift_share, method=method, threshold=threshold
        )
    shown = emb if hypothesis is not None and _complete(reference, current, emb) else []
    metrics: list[Any] = [preset]
    if shown:
        metrics.append(
            EmbeddingsDrift(
                embeddings_name=_EMBEDDINGS, drift_method=MMDDriftMethod(bootstrap=True)
            )
        )
    definition = _data_definition(reference, cols, shown)
    keep = [*cols, *shown]
    ref_ds = Dataset.from_pandas(reference[keep].reset_index(drop=True), data_definition=definition)
    cur_ds = Dataset.from_pandas(current[keep].reset_index(drop=True), data_definition=definition)
    snapshot = Report(metrics, include_tests=True).run(cur_ds, ref_ds)

    features: list[FeatureDrift] = []
    for result in snapshot.metric_results.values():
        config = result.to_dict().get("config", {})
        if config.get("type") == _VALUE_DRIFT_TYPE and isinstance(result, SingleValue):
            name = str(config["column"])
            method_name = methods.get(name) or str(config.get("method"))
            score = float(result.value)
            features.append(
                FeatureDrift(
                    name=name,
                    method=method_name,
                    score=score,
                    threshold=float(config["threshold"]),
                    drifted=_failed(result),
                    p_value=score if is_p_value_method(method_name) else None,
                )
            )
    order = {c: i for i, c in enumerate(cols)}
    features.sort(key=lambda f: order.get(f.name, len(order)))
    if family:
        judged = stats.judge(
            [*((f.name, f.method, f.score) for f in features), *extra], thresholds, alpha=alpha
        )
        features = [
            replace(f, threshold=j.threshold, drifted=j.drifted)
            for f, j in zip(features, judged.features, strict=False)
        ]
        features += [
            FeatureDrift(j.name, j.method, j.score, j.threshold, j.drifted, p_value=j.score)
            for j in judged.features[len(features) :]
        ]
    share = sum(f.drifted for f in features) / max(1, len(features))

    if html_path is not None:
        snapshot.save_html(str(html_path))
    if json_path is not None:
        snapshot.save_json(str(json_path))
    run_id = workspace.add(snapshot) if workspace is not None else None

    group_shares: dict[str, float] = {}
    for gname, gcols in (groups or {}).items():
        names = set(stats.group_members([f.name for f in features], gcols))
        members = [f for f in features if f.name in names]
        if members:
            group_shares[gname] = sum(f.drifted for f in members) / len(members)
    if family:
        drifted = any(f.drifted for f in features)
    elif group_shares:
        drifted = any(v >= drift_share and v > 0 for v in group_shares.values())
    else:
        drifted = share >= drift_share and any(f.drifted for f in features)
    return DriftVerdict(
        status="drift" if drifted else "no_drift",
        reference_rows=n_ref,
        current_rows=n_cur,
        drift_share=share,
        drift_share_threshold=drift_share,
        features=tuple(features),
        workspace_run=run_id,
        group_shares=group_shares,
        alpha=alpha if family else None,
    )


def _complete(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str]) -> bool:
    return bool(
        reference[list(columns)].notna().all().all() and current[list(columns)].notna().all().all()
    )


class WorkspaceTarget:
    """One project (by name, created on first use) of a local Evidently workspace."""

    def __init__(self, directory: str | Path, project: str, run_name: str | None = None) -> None:
        self.directory, self.project, self.run_name = Path(directory), project, run_name

    def add(self, snapshot: Any) -> str:
        with _WORKSPACE_LOCK:
            ws = _workspace(str(self.directory))
            found = ws.search_project(self.project)
            project = found[0] if found else ws.create_project(self.project)
            ref = ws.add_run(project.id, snapshot, include_data=False, name=self.run_name)
        return str(ref.id)


_WORKSPACE_LOCK = threading.Lock()


@functools.cache
def _workspace(directory: str) -> Any:
    from evidently.ui.workspace import Workspace

    Path(directory).mkdir(parents=True, exist_ok=True)
    return Workspace.create(directory)


def workspace_projects(directory: str | Path) -> dict[str, list[str]]:
    """Project name -> run ids in a workspace directory (what ``evidently ui`` would list)."""
    from evidently.ui.workspace import Workspace

    ws = Workspace(str(directory))
    return {p.name: [str(r) for r in ws.list_runs(p.id)] for p in ws.list_projects()}
