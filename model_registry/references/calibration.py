"""Temperature scaling and calibration metrics (plain numpy), for ``action`` v2's trainer.

* :func:`fit_temperature`: the one ``T`` minimising the negative log-likelihood of
  ``softmax(logits / T)`` on a calibration split (a deterministic 1-D search over ``log T``:
  a coarse grid, then golden-section refinement around the best grid point).
* :func:`expected_calibration_error`: top-label ECE with equal-width confidence bins
  (``(0, 1/B], (1/B, 2/B], ...``): the bin-size weighted mean of |accuracy - mean confidence|.
* :func:`confidence_summary`: how often the model is unsure and how sure it ever gets.
"""

from __future__ import annotations

import math

import numpy as np

ECE_BINS = 15
T_BOUNDS = (0.05, 20.0)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels under ``softmax(logits / T)``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    zmax = z.max(axis=1, keepdims=True)
    log_norm = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(y)), y]))


def fit_temperature(
    logits: np.ndarray, y: np.ndarray, bounds: tuple[float, float] = T_BOUNDS
) -> float:
    """``argmin_T nll(logits, y, T)`` within ``bounds``; deterministic."""
    if len(y) == 0:
        raise ValueError("no calibration examples")
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    grid = np.linspace(lo, hi, 61)
    losses = [nll(logits, y, math.exp(g)) for g in grid]
    best = int(np.argmin(losses))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(logits, y, math.exp(c)), nll(logits, y, math.exp(d))
    for _ in range(60):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(logits, y, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(logits, y, math.exp(d))
    return math.exp((a + b) / 2)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE of ``probs [N, C]`` against labels ``y [N]`` over equal-width bins."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(y) == 0:
        return 0.0
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y)).astype(np.float64)
    # Bin k holds confidences in (k/B, (k+1)/B]; a confidence of exactly 0 joins bin 0.
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for k in range(n_bins):
        m = bins == k
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def confidence_summary(
    probs: np.ndarray, thresholds: tuple[float, ...] = (0.4, 0.5, 0.6)
) -> dict[str, float]:
    """Top-probability quantiles, maximum, and the fraction below each threshold."""
    conf = np.asarray(probs, dtype=np.float64).max(axis=1)
    out = {f"frac_below_{t:g}": float(np.mean(conf < t)) for t in thresholds}
    for q in (0.1, 0.5, 0.9, 0.99):
        out[f"conf_q{round(q * 100)}"] = float(np.quantile(conf, q))
    out["conf_max"] = float(conf.max())
    return out
