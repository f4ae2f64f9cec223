"""The statistics behind a drift verdict: a test per feature chosen by sample size, and a
family-wise rule so that testing eleven features at once does not multiply false alarms.

Design (nominal false-alarm rate per report: ``ALPHA`` = 1%, for the whole family):

- **Small samples** (fewer than ``LARGE_SAMPLE`` rows on either side): a p-value per feature,
  two-sample Kolmogorov-Smirnov for numbers, chi-square for labels. The family is corrected
  with Holm's step-down rule: sort the p-values, reject the i-th smallest while
  ``p_(i) < ALPHA / (k - i + 1)``. Holm controls the family-wise error rate at ``ALPHA`` under
  any dependence between features (brightness and contrast move together), and rejects at
  least what Bonferroni would.
- **Large samples** (``LARGE_SAMPLE`` rows or more on both sides): with thousands of rows a
  p-value flags differences no one cares about, so each feature is judged by a distance
  (Wasserstein normed by the reference's spread) against a threshold *calibrated on the
  reference*: the ``1 - ALPHA / k`` level (Bonferroni) of the same distance between two disjoint
  halves of the reference, rescaled to the compared sample sizes, and never below
  ``MIN_EFFECT`` (a shift of a tenth of a standard deviation is not worth an alert). The
  reference rows are disjoint from the window judged against it, so the threshold never sees
  the rows it judges.

A report drifts when any feature is rejected; ``groups`` (input vs prediction columns) say
which part of the row moved. For numbers, the scores Evidently computes in a report
(``drift.evidently_adapter``) and :func:`score` here are the same (K-S p-values and normed
Wasserstein distances, both from scipy; a unit test checks it), so the seeded trials, which skip
Evidently to run thousands of comparisons in seconds, hold for the reports. For labels Evidently's
chi-square compares the current counts with the reference's proportions; :func:`score` uses the
two-sample contingency test.

**Embeddings** (``emb_`` columns, :mod:`drift.embeddings`) are one hypothesis, not 32: the
MMD permutation test of :mod:`drift.statistics.mmd` between the rows that carry an embedding on
each side, judged only when both sides have ``MIN_EMBEDDED_ROWS`` of them (live capture embeds a
sample of rows). Its p-value joins Holm's correction with the per-feature tests, so the
family, embedding included, still errs at most ``ALPHA`` per report; it is reported as the
feature ``embedding`` and the group ``embedding``. With large samples it counts in the ``k`` of
the distances' Bonferroni level, and is held to Holm with the labels' p-values, as they are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from drift.embeddings import EMB_PREFIX
from drift.statistics.mmd import mmd_test

ALPHA = 0.01
LARGE_SAMPLE = 1000
MIN_EFFECT = 0.1
CALIBRATION_DRAWS = 200
# Evidently's display names for the methods used here (``FeatureDrift.method``).
KS = "K-S p_value"
CHI_SQUARE = "chi-square p_value"
WASSERSTEIN = "Wasserstein distance (normed)"
MMD = "MMD permutation p_value"
EMBEDDING = "embedding"  # the embedding hypothesis' name, and its group's
MIN_EMBEDDED_ROWS = 20
MIN_PERMUTATIONS = 500
# Evidently's method ids for the same tests (``DataDriftPreset(per_column_method=...)``).
EVIDENTLY_METHODS = {KS: "ks", CHI_SQUARE: "chisquare", WASSERSTEIN: "wasserstein"}


@dataclass(frozen=True)
class Judged:
    """One feature's score, what it was judged against, and the outcome."""

    name: str
    method: str
    score: float
    threshold: float
    drifted: bool

    @property
    def is_p_value(self) -> bool:
        return self.method != WASSERSTEIN


@dataclass(frozen=True)
class Judgement:
    """The family's outcome: every feature, and the groups with a drifted feature."""

    features: tuple[Judged, ...]
    alpha: float
    groups: dict[str, float] = field(default_factory=dict)  # group -> share of drifted features

    @property
    def drifted(self) -> bool:
        return any(f.drifted for f in self.features)

    @property
    def drifted_groups(self) -> list[str]:
        return [g for g, share in self.groups.items() if share > 0]


def is_numeric(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))


def feature_columns(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    skip: Iterable[str] = (),
    prefix: str | None = None,
) -> list[str]:
    """Columns both frames share (not in ``skip``; only those starting with ``prefix`` when
    given) with a value on each side: a column with none (no detection ever: NaN confidences)
    says nothing. Embedding columns are never among them: they are tested together
    (:func:`embedding_hypothesis`)."""
    left_out = set(skip)
    cols = [
        c
        for c in reference.columns
        if c in current.columns and c not in left_out and not str(c).startswith(EMB_PREFIX)
    ]
    if prefix is not None:
        cols = [c for c in cols if c.startswith(prefix)]
    return [c for c in cols if reference[c].notna().any() and current[c].notna().any()]


def method_for(n_reference: int, n_current: int, numeric: bool) -> str:
    """The test for one feature at these sample sizes (see the module docstring)."""
    if not numeric:
        return CHI_SQUARE
    if min(n_reference, n_current) >= LARGE_SAMPLE:
        return WASSERSTEIN
    return KS


def wasserstein_normed(reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently's ``wasserstein``: the first Wasserstein distance over the reference's std."""
    norm = max(float(np.std(reference)), 0.001)
    return float(stats.wasserstein_distance(reference, current)) / norm


def chi_square_p(reference: pd.Series, current: pd.Series) -> float:
    """Two-sample chi-square on the label counts (a 2 x labels contingency table)."""
    labels = sorted(set(reference.astype(str)) | set(current.astype(str)))
    table = np.array(
        [
            [int((reference.astype(str) == label).sum()) for label in labels],
            [int((current.astype(str) == label).sum()) for label in labels],
        ]
    )
    if len(labels) < 2:
        return 1.0
    return float(stats.chi2_contingency(table)[1])


def calibrated_threshold(
    reference: np.ndarray, n_current: int, alpha: float, *, seed: int = 0
) -> float:
    """The distance two samples of the reference's own distribution reach with probability
    ``alpha`` (normal tail over ``CALIBRATION_DRAWS`` half-splits), rescaled from the halves'
    sizes to (len(reference), n_current); at least ``MIN_EFFECT``."""
    rng = np.random.default_rng(seed)
    half = len(reference) // 2
    draws = []
    for _ in range(CALIBRATION_DRAWS):
        order = rng.permutation(len(reference))
        draws.append(wasserstein_normed(reference[order[:half]], reference[order[half:]]))
    null = np.asarray(draws)
    level = float(null.mean() + stats.norm.isf(alpha) * null.std(ddof=1))
    # The null distance shrinks like sqrt(1/n + 1/m): from two halves to reference vs current.
    scale = np.sqrt((1 / len(reference) + 1 / n_current) / (1 / half + 1 / (len(reference) - half)))
    return max(MIN_EFFECT, level * float(scale))


def score(reference: pd.Series, current: pd.Series, method: str) -> float:
    """One feature's score by ``method`` (NaNs dropped, as Evidently does)."""
    ref, cur = reference.dropna(), current.dropna()
    if method == CHI_SQUARE:
        return chi_square_p(ref, cur)
    a, b = ref.to_numpy(dtype=float), cur.to_numpy(dtype=float)
    if method == WASSERSTEIN:
        return wasserstein_normed(a, b)
    return float(stats.ks_2samp(a, b).pvalue)


def holm(p_values: Sequence[float], alpha: float) -> tuple[list[bool], list[float]]:
    """Holm's step-down rule: which hypotheses are rejected, and each one's step level."""
    k = len(p_values)
    order = sorted(range(k), key=lambda i: p_values[i])
    rejected, levels = [False] * k, [alpha] * k
    still = True
    for rank, i in enumerate(order):
        levels[i] = alpha / (k - rank)
        still = still and p_values[i] < levels[i]
        rejected[i] = still
    return rejected, levels


def permutations_for(k: int, alpha: float) -> int:
    """Permutations for the embedding test in a family of ``k``: a permutation p-value is at
    least ``1 / (1 + permutations)``, and Holm's first step asks for less than ``alpha / k``;
    twice as many as that floor needs keeps a clear shift rejectable."""
    return max(MIN_PERMUTATIONS, math.ceil(2 * max(1, k) / alpha))


def embedded(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The rows of ``frame`` that carry every embedding column (live capture embeds a sample)."""
    return frame[list(columns)].dropna().to_numpy(dtype=float)


def embedding_hypothesis(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    *,
    family: int,
    alpha: float = ALPHA,
    seed: int = 0,
) -> tuple[str, str, float] | None:
    """The embedding group as one (name, method, p-value) hypothesis of a family of ``family``,
    or None when either side has fewer than ``MIN_EMBEDDED_ROWS`` embedded rows."""
    if not columns:
        return None
    ref, cur = embedded(reference, columns), embedded(current, columns)
    if min(len(ref), len(cur)) < MIN_EMBEDDED_ROWS:
        return None
    result = mmd_test(ref, cur, permutations=permutations_for(family, alpha), seed=seed)
    return (EMBEDDING, MMD, result.p_value)


def group_members(names: Iterable[str], columns: Iterable[str]) -> list[str]:
    """The judged ``names`` that belong to a group of ``columns``: the columns themselves, and
    the ``embedding`` hypothesis for a group of embedding columns."""
    cols = set(columns)
    has_embedding = any(str(c).startswith(EMB_PREFIX) for c in cols)
    return [n for n in names if n in cols or (n == EMBEDDING and has_embedding)]


def judge(
    scored: Sequence[tuple[str, str, float]],
    thresholds: Mapping[str, float],
    *,
    alpha: float = ALPHA,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> Judgement:
    """The family rule over (name, method, score) triples: Holm over the p-values (the
    embedding hypothesis among them); distances against their calibrated ``thresholds``
    (already at the Bonferroni level)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha has value {alpha!r}. Expected 0 < alpha < 1.")
    tested = [s for s in scored if s[1] != WASSERSTEIN]
    rejected, levels = holm([s[2] for s in tested], alpha)
    by_name = {s[0]: (r, lv) for s, r, lv in zip(tested, rejected, levels, strict=True)}
    out = []
    for name, method, value in scored:
        if method == WASSERSTEIN:
            limit = thresholds[name]
            out.append(Judged(name, method, value, limit, value >= limit))
        else:
            drifted, level = by_name[name]
            out.append(Judged(name, method, value, level, drifted))
    shares: dict[str, float] = {}
    for gname, cols in (groups or {}).items():
        names = set(group_members([f.name for f in out], cols))
        members = [f for f in out if f.name in names]
        if members:
            shares[gname] = sum(f.drifted for f in members) / len(members)
    return Judgement(tuple(out), alpha, shares)


def plan(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    alpha: float = ALPHA,
    *,
    extra: int = 0,
) -> tuple[dict[str, str], dict[str, float]]:
    """Per column: the method for these sample sizes, and for distances the calibrated
    threshold (computed on the reference rows only). ``extra`` hypotheses (the embedding's)
    count in the family's size."""
    methods, thresholds = {}, {}
    k = max(1, len(columns) + extra)
    for col in columns:
        ref, cur = reference[col].dropna(), current[col].dropna()
        methods[col] = method_for(len(ref), len(cur), is_numeric(reference[col]))
        if methods[col] == WASSERSTEIN:
            thresholds[col] = calibrated_threshold(ref.to_numpy(dtype=float), len(cur), alpha / k)
    return methods, thresholds


def decide(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    *,
    alpha: float = ALPHA,
    groups: Mapping[str, Sequence[str]] | None = None,
    embedding: Sequence[str] = (),
) -> Judgement:
    """Score and judge every column, and the ``embedding`` columns as one hypothesis, with
    scipy and numpy alone (what the seeded trials and the benchmark run: no Evidently report,
    so thousands of comparisons take seconds)."""
    columns = [c for c in columns if not str(c).startswith(EMB_PREFIX)]
    hypothesis = embedding_hypothesis(
        reference, current, embedding, family=len(columns) + 1, alpha=alpha
    )
    extra = [hypothesis] if hypothesis is not None else []
    methods, thresholds = plan(reference, current, columns, alpha, extra=len(extra))
    scored = [(c, methods[c], score(reference[c], current[c], methods[c])) for c in columns]
    return judge([*scored, *extra], thresholds, alpha=alpha, groups=groups)
