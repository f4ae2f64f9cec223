"""Seeded drift trials: how often a report cries wolf, and how often it sees a real change.

Two pools of rows are drawn from the real-photo distribution of :mod:`drift.reference.photos`: the
*reference pool* (seed 0, the draws a bootstrap reference is made of) and the *trial pool*
(another seed: disjoint draws of the same distribution). Each trial pool image is also
transformed by every shift of :data:`SHIFTS` and its rows kept per shift, so a trial is only
row sampling and the statistics of :mod:`drift.statistics` (thousands of trials take seconds).

Trial ``t`` (seeds ``0..N-1``, none chosen by hand) samples ``reference_rows`` rows of the
reference pool and ``current_rows`` rows of a trial pool, and judges them with
:func:`drift.statistics.decide`. Distance thresholds, where the sizes call for them, are calibrated
on the reference sample only, which is disjoint from the current one.

Rows hold input features, and prediction features when a ``predict`` function (a detector's
``Model.predict``) is given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pandas as pd

from drift.reference.photos import augment, photo
from drift.rows import PRED_PREFIX, input_row, input_size, prediction_row
from drift.statistics import ALPHA, Judgement, decide, feature_columns

Shift = Callable[[np.ndarray], np.ndarray]


def darken(gain: float) -> Shift:
    def shift(image: np.ndarray) -> np.ndarray:
        return np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)

    return shift


def blur(sigma: float) -> Shift:
    def shift(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (0, 0), sigma)

    return shift


def crop_and_rotate(image: np.ndarray) -> np.ndarray:
    """The centre 60 % of each side, turned a quarter: a camera zoomed in and mounted sideways."""
    h, w = image.shape[:2]
    ch, cw = max(1, int(h * 0.6)), max(1, int(w * 0.6))
    y, x = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(np.rot90(image[y : y + ch, x : x + cw]))


SHIFTS: dict[str, Shift] = {
    "darkened": darken(0.4),
    "blurred": blur(3.0),
    "cropped_rotated": crop_and_rotate,
}
# The group a shift must be reported in: all three change what clients send.
EXPECTED_GROUP = {"darkened": "input", "blurred": "input", "cropped_rotated": "input"}


def _row(image: np.ndarray, output: Any | None) -> dict[str, Any]:
    row: dict[str, Any] = dict(input_row(image))
    if output is not None:
        row.update(prediction_row("detections", output, input_size(image)))
    return row


def pools(
    n: int,
    seed: int,
    shifts: Mapping[str, Shift] | None = None,
    predict: Callable[[list[np.ndarray]], list[Any]] | None = None,
    batch: int = 8,
) -> dict[str, pd.DataFrame]:
    """Rows of ``n`` photo draws (``seed``) as they are (``"none"``) and under each shift."""
    rng = np.random.default_rng(seed)
    names = ["none", *(shifts or {})]
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for start in range(0, n, batch):
        images = [augment(photo(i), rng) for i in range(start, min(n, start + batch))]
        for name in names:
            shifted = images if name == "none" else [(shifts or {})[name](im) for im in images]
            outputs: Sequence[Any] = predict(shifted) if predict else [None] * len(shifted)
            rows[name].extend(_row(im, out) for im, out in zip(shifted, outputs, strict=True))
    return {name: pd.DataFrame(r) for name, r in rows.items()}


def groups_of(columns: Sequence[str]) -> dict[str, list[str]]:
    return {
        "input": [c for c in columns if not c.startswith(PRED_PREFIX)],
        "prediction": [c for c in columns if c.startswith(PRED_PREFIX)],
    }


def trial(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    seed: int,
    *,
    reference_rows: int,
    current_rows: int,
    alpha: float = ALPHA,
) -> Judgement:
    """One seeded trial: disjoint samples of the two pools, judged by the family rule."""
    rng = np.random.default_rng(seed)
    ref = reference.iloc[rng.choice(len(reference), reference_rows, replace=False)]
    cur = current.iloc[rng.choice(len(current), current_rows, replace=False)]
    cols = feature_columns(ref, cur)
    return decide(ref, cur, cols, alpha=alpha, groups=groups_of(cols))


@dataclass(frozen=True)
class Rate:
    """Out of ``trials``: reports that drifted, and those that named ``group``."""

    trials: int
    drifted: int
    named: int
    group: str
    features: dict[str, int]

    @property
    def rate(self) -> float:
        return self.drifted / self.trials

    @property
    def named_rate(self) -> float:
        return self.named / self.trials


def rate(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    trials: int,
    *,
    reference_rows: int,
    current_rows: int,
    group: str = "input",
    alpha: float = ALPHA,
) -> Rate:
    """Trials ``0..trials-1`` of one stream: how many drifted, how many named ``group``."""
    drifted = named = 0
    counts = dict.fromkeys(feature_columns(reference, current), 0)
    for t in range(trials):
        j = trial(
            reference,
            current,
            t,
            reference_rows=reference_rows,
            current_rows=current_rows,
            alpha=alpha,
        )
        drifted += j.drifted
        named += group in j.drifted_groups
        for f in j.features:
            counts[f.name] += f.drifted
    return Rate(trials, drifted, named, group, counts)
