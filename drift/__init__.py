"""Drift monitoring: capture features per request, keep windows, compare them, give verdicts.

features           cheap per-request input and prediction features
rows               one captured row per (request, model node, version)
capture            capture in the ingress: O(1) on the request path, hand-over in a thread
windows            captured rows per (model, version) in SQLite, bounded by size and age
reference          reference datasets: a version's rows on its seeded evaluation inputs
monitor            DriftMonitor: takes rows, keeps windows, runs reports, raises alerts
actor              the drift monitor as a named, detached Ray actor
reports            drift reports on disk: an SQLite index, Evidently HTML and JSON
evidently_adapter  the one module that imports Evidently: a data-drift report -> DriftVerdict
verdict            the outcome of one drift check, in plain types
check              the prediction_drift rollout check (challenger vs champion)

Submodules are not imported here: Evidently, pandas and Ray load only where they are used.
"""

__all__ = [
    "actor",
    "capture",
    "check",
    "evidently_adapter",
    "features",
    "monitor",
    "reference",
    "reports",
    "rows",
    "verdict",
    "windows",
]
