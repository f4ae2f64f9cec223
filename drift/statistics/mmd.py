"""Maximum mean discrepancy between two samples of embeddings, with a permutation p-value.

An embedding is many numbers that move together, so testing its columns one by one would be
both weak (each coordinate moves a little) and expensive in the family's error budget (32
hypotheses). MMD (Gretton et al., 2012) compares the two samples as a whole: with a kernel
``k``, ``MMD² = E k(x, x') + E k(y, y') - 2 E k(x, y)``, zero exactly when the distributions are
equal (for a characteristic kernel such as the Gaussian RBF). :func:`mmd2` is the unbiased
estimate (the diagonal left out), so it hovers around zero, sometimes below, under the null.

The bandwidth is the median heuristic over the pooled sample: ``k(a, b) = exp(-|a - b|² /
(2 median²))``, ``median`` the median distance between distinct pooled points. The p-value is a
permutation test: pool the rows, reassign which ``m`` of them are "reference" ``permutations``
times (seeded), and count how often the shuffled statistic reaches the observed one,
``p = (1 + count) / (1 + permutations)``. That p-value is exact under the null (the rows are
exchangeable then) whatever the embeddings' distribution, at the price of a floor of
``1 / (1 + permutations)``: callers that correct for many hypotheses need enough permutations
(``drift.statistics.permutations_for``). The kernel matrix is computed once; each permutation
is one row of a 0/1 matrix, and all of them are scored with one matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MMDResult:
    mmd2: float
    p_value: float
    bandwidth: float
    permutations: int


def _as_rows(sample: np.ndarray, what: str) -> np.ndarray:
    rows = np.asarray(sample, dtype=np.float64)
    if rows.ndim != 2 or len(rows) < 2:
        raise ValueError(f"{what} has shape {rows.shape}. Expected (rows >= 2, dims).")
    if not np.isfinite(rows).all():
        raise ValueError(f"{what} holds NaN or infinite values; drop those rows first.")
    return rows


def rbf_kernel(pooled: np.ndarray) -> tuple[np.ndarray, float]:
    """The Gaussian kernel matrix of ``pooled`` rows, and its (median-heuristic) bandwidth."""
    sq = np.einsum("ij,ij->i", pooled, pooled)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * pooled @ pooled.T, 0.0)
    off = d2[~np.eye(len(pooled), dtype=bool)]
    positive = off[off > 0]
    # All points equal: any bandwidth gives MMD² = 0; 1.0 keeps the kernel finite.
    median2 = float(np.median(positive)) if len(positive) else 1.0
    return np.exp(-d2 / (2.0 * median2)), float(np.sqrt(median2))


def _statistics(kernel: np.ndarray, masks: np.ndarray, m: int) -> np.ndarray:
    """Unbiased MMD² for each row of ``masks`` (1 = reference, ``m`` ones per row)."""
    n = kernel.shape[0]
    k = n - m
    masks = masks.astype(kernel.dtype)
    within = ((masks @ kernel) * masks).sum(axis=1)  # sum over reference pairs, diagonal too
    across = masks @ kernel.sum(axis=1) - within
    rest = kernel.sum() - within - 2.0 * across
    diagonal = np.diag(kernel)
    within -= masks @ diagonal
    rest -= (1.0 - masks) @ diagonal
    return within / (m * (m - 1)) + rest / (k * (k - 1)) - 2.0 * across / (m * k)  # type: ignore[no-any-return]


def mmd2(reference: np.ndarray, current: np.ndarray) -> float:
    """Unbiased MMD² with the median-heuristic RBF kernel of the pooled rows."""
    x, y = _as_rows(reference, "reference"), _as_rows(current, "current")
    kernel, _ = rbf_kernel(np.vstack([x, y]))
    mask = np.zeros((1, len(x) + len(y)))
    mask[0, : len(x)] = 1.0
    return float(_statistics(kernel, mask, len(x))[0])


def mmd_test(
    reference: np.ndarray, current: np.ndarray, *, permutations: int = 500, seed: int = 0
) -> MMDResult:
    """MMD² and its permutation p-value (``permutations`` seeded shuffles of the pooled rows)."""
    if permutations < 1:
        raise ValueError(f"permutations has value {permutations!r}. Expected at least 1.")
    x, y = _as_rows(reference, "reference"), _as_rows(current, "current")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"reference has {x.shape[1]} dims and current {y.shape[1]}.")
    kernel, bandwidth = rbf_kernel(np.vstack([x, y]))
    m, n = len(x), len(x) + len(y)
    observed_mask = np.zeros((1, n))
    observed_mask[0, :m] = 1.0
    observed = float(_statistics(kernel, observed_mask, m)[0])
    rng = np.random.default_rng(seed)
    masks = rng.permuted(np.broadcast_to(observed_mask, (permutations, n)), axis=1)
    null = _statistics(kernel, masks, m)
    # A tiny tolerance: a shuffle that reproduces the observed split must count as reaching it
    # despite summation order.
    reached = int((null >= observed - 1e-12 * max(1.0, abs(observed))).sum())
    return MMDResult(observed, (1 + reached) / (1 + permutations), bandwidth, permutations)
