"""The outcome of one drift check, in plain types (no Evidently objects leak out)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

# ``no_reference``: the version has no frozen reference for the current feature set, so there
# is nothing to compare against; never ``drift``.
DriftStatus = Literal["no_drift", "drift", "insufficient_data", "no_reference"]


def _finite_or_none(value: float | None) -> float | None:
    # JSON has no NaN/inf; a verdict must survive json.dumps for the HTTP API and audit log.
    if value is None or not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class FeatureDrift:
    """One column's result.

    ``score`` is what ``threshold`` was judged against: a p-value for statistical tests
    (drifted when ``score < threshold``) or a distance such as Wasserstein/Jensen-Shannon
    (drifted when ``score >= threshold``). Evidently switches from tests to distances once the
    reference passes ~1000 rows, so ``method`` must always be read alongside ``score``.
    ``p_value`` repeats ``score`` for test methods and is None for distances.
    """

    name: str
    method: str
    score: float
    threshold: float
    drifted: bool
    p_value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "method": self.method,
            "score": _finite_or_none(self.score),
            "threshold": self.threshold,
            "drifted": self.drifted,
            "p_value": _finite_or_none(self.p_value),
        }


@dataclass(frozen=True)
class DriftVerdict:
    status: DriftStatus
    reference_rows: int
    current_rows: int
    drift_share: float = 0.0
    # Share of drifted features at or above which the whole window counts as drifted.
    drift_share_threshold: float = 0.5
    features: tuple[FeatureDrift, ...] = field(default_factory=tuple)
    reason: str | None = None
    # Id of the run in the Evidently workspace the report was added to, if any.
    workspace_run: str | None = None
    # Share of drifted features per column group ("input", "prediction") when judged by group.
    group_shares: dict[str, float] = field(default_factory=dict)
    # The family's false-alarm rate the features were judged at (drift.statistics); None when each
    # feature was judged alone (an explicit Evidently method and the drift-share rule).
    alpha: float | None = None

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    @property
    def drifted_groups(self) -> list[str]:
        """The column groups with at least one drifted feature: which part of the row moved."""
        return [name for name, share in self.group_shares.items() if share > 0]

    def feature(self, name: str) -> FeatureDrift:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(
            f"Feature {name!r} is not in this verdict; have {[f.name for f in self.features]}."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "drift_share": self.drift_share,
            "drift_share_threshold": self.drift_share_threshold,
            "drifted_features": self.drifted_features,
            "features": [f.to_dict() for f in self.features],
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "reason": self.reason,
            "workspace_run": self.workspace_run,
            "group_shares": dict(self.group_shares),
            "drifted_groups": self.drifted_groups,
            "alpha": self.alpha,
        }
