"""Seeded trials of the drift verdict on real photos: false alarms and detections.

Rows hold input features only (no model runs here, so the trials take seconds on 2 cores); the
benchmark ``python -m load_tests.drift_rates --detector DIR`` adds a detector's prediction
features. Trials use seeds 0..N-1; the reference pool (seed 0: the draws a bootstrap reference
is built from) and the trial pools (seeds 1 and 2) are disjoint draws of the same photos.
"""

from __future__ import annotations

import pandas as pd
import pytest

from drift.reference import evaluation_images
from drift.reference.photos import photo_draws
from drift.statistics import decide
from drift.statistics.trials import EXPECTED_GROUP, SHIFTS, groups_of, pools, rate

TRIALS = 40
REFERENCE_ROWS, CURRENT_ROWS = 200, 40
# The feature each shift must move (besides whatever else it moves).
EXPECTED_FEATURE = {
    "darkened": "brightness",
    "blurred": "sharpness",
    "cropped_rotated": "aspect",
}


@pytest.fixture(scope="module")
def reference_pool() -> pd.DataFrame:
    return pools(300, seed=0)["none"]


@pytest.fixture(scope="module")
def calm_pool() -> pd.DataFrame:
    return pools(800, seed=1)["none"]


@pytest.fixture(scope="module")
def shifted_pools() -> dict[str, pd.DataFrame]:
    return pools(200, seed=2, shifts=SHIFTS)


def test_disjoint_samples_of_the_same_photos_rarely_drift(
    reference_pool: pd.DataFrame, calm_pool: pd.DataFrame
) -> None:
    got = rate(
        reference_pool,
        calm_pool,
        TRIALS,
        reference_rows=REFERENCE_ROWS,
        current_rows=CURRENT_ROWS,
    )
    assert got.trials == TRIALS
    assert got.rate <= 0.05, got  # designed for <= 1 % per report


@pytest.mark.parametrize("shift", sorted(SHIFTS))
def test_shifted_streams_drift_and_name_the_input_group(
    reference_pool: pd.DataFrame, shifted_pools: dict[str, pd.DataFrame], shift: str
) -> None:
    got = rate(
        reference_pool,
        shifted_pools[shift],
        TRIALS,
        reference_rows=REFERENCE_ROWS,
        current_rows=CURRENT_ROWS,
        group=EXPECTED_GROUP[shift],
    )
    assert got.rate >= 0.95 and got.named_rate >= 0.95, got
    assert got.features[EXPECTED_FEATURE[shift]] >= 0.95 * TRIALS, got.features


def test_twenty_disjoint_windows_of_unchanged_traffic_raise_at_most_one_alarm(
    reference_pool: pd.DataFrame, calm_pool: pd.DataFrame
) -> None:
    reference = reference_pool.head(240)  # the bootstrap reference's own rows
    cols = list(reference.columns)
    drifted = [
        decide(reference, calm_pool.iloc[i * 40 : (i + 1) * 40], cols, groups=groups_of(cols))
        for i in range(20)
    ]
    assert sum(j.drifted for j in drifted) <= 1


def test_the_reference_pool_is_the_bootstrap_reference_s_photos() -> None:
    draws, again, other = photo_draws(6, seed=0), evaluation_images(6, seed=0), photo_draws(6, 1)
    assert all((a == b).all() for a, b in zip(draws, again, strict=True))
    assert not any(a.shape == b.shape and (a == b).all() for a, b in zip(draws, other, strict=True))
    assert {max(im.shape[:2]) for im in draws} <= set(range(320, 961))
    row = pools(2, seed=0)["none"].iloc[0]
    assert row["width"] == draws[0].shape[1] and row["height"] == draws[0].shape[0]
