"""Drift monitoring: capture features per request, keep windows, compare them, give verdicts.

features           cheap per-request input and prediction features
rows               one captured row per (request, model node, version)
capture            capture in the ingress: O(1) on the request path, hand-over in a thread
windows            captured rows per (model, version) in SQLite, bounded by size and age
photos             real photos from the scikit-image wheel, augmented like uploads (seeded)
reference          reference datasets: a version's rows on its seeded evaluation inputs
monitor            DriftMonitor: takes rows, keeps windows, runs reports, raises alerts
alerts             which drifting reports raise a champion alert (disjoint windows), webhook
actor              the drift monitor as a named, detached Ray actor
reports            drift reports on disk: an SQLite index, Evidently HTML and JSON
evidently_adapter  the one module that imports Evidently: a data-drift report -> DriftVerdict
stats              per-feature tests by sample size, Holm's correction, calibrated distances
trials             seeded trials of the verdict on real photos: false-alarm and detection rates
verdict            the outcome of one drift check, in plain types
check              the prediction_drift rollout check (challenger vs champion)

Submodules are not imported here: Evidently, pandas and Ray load only where they are used.
"""

__all__ = [
    "actor",
    "alerts",
    "capture",
    "check",
    "evidently_adapter",
    "features",
    "monitor",
    "photos",
    "reference",
    "reports",
    "rows",
    "stats",
    "trials",
    "verdict",
    "windows",
]
