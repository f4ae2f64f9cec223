"""Evaluation sets the repo owns and the scoring of registered versions on them.

:mod:`.detection_set` (person photos and composites with by-eye truth boxes),
:mod:`.detection_metrics` (greedy IoU matching, per-subset recall) and :mod:`.evaluate`
(``canaryserve models evaluate``, the MLflow record, :func:`.evaluate.best_version`).
"""
