"""Seeded trials of the drift verdict on real photos: false alarms and detections.

Rows hold input features (no detector runs here, so the trials take seconds on 2 cores), and
in the embedding trials the embedder's columns; the benchmark ``python -m load_tests.drift_rates
--detector DIR`` adds a detector's prediction features. Trials use seeds 0..N-1; the reference
pool (seed 0: the draws a bootstrap reference is built from) and the trial pools (seeds 1 and 2)
are disjoint draws of the same photos.
"""

from __future__ import annotations

import pandas as pd
import pytest

from drift.embeddings import Embedder, default_embedder
from drift.reference import evaluation_images
from drift.reference.photos import photo_draws
from drift.statistics import EMBEDDING, decide
from drift.statistics.trials import (
    EXPECTED_GROUP,
    SCENE_SHIFTS,
    SHIFTS,
    Rate,
    groups_of,
    pools,
    rate,
)

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


# --- the embedding group ----------------------------------------------------------------------
# Pools with embeddings (drift.embeddings, ~11 ms per image on 2 cores): the reference pool's
# draws again, a smaller trial pool of unchanged photos, and one of shifted ones that adds the
# histogram-matched scene. Each image is embedded once, when its pool is built.


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    """The platform's embedder, built from its wheels first when this clone has none yet
    (bootstrap builds it too; in a fresh clone the unit tests may run first)."""
    from model_registry.references.embedder import ensure_embedder

    ensure_embedder()
    found = default_embedder()
    assert found.available, found.path
    return found


@pytest.fixture(scope="module")
def embedded_reference_pool(embedder: Embedder) -> pd.DataFrame:
    return pools(300, seed=0, embedder=embedder)["none"]


@pytest.fixture(scope="module")
def embedded_calm_pool(embedder: Embedder) -> pd.DataFrame:
    return pools(200, seed=1, embedder=embedder)["none"]


@pytest.fixture(scope="module")
def embedded_shifted_pools(embedder: Embedder) -> dict[str, pd.DataFrame]:
    return pools(200, seed=2, shifts={**SHIFTS, **SCENE_SHIFTS}, embedder=embedder)


def _rate(reference: pd.DataFrame, current: pd.DataFrame, group: str) -> Rate:
    return rate(
        reference,
        current,
        TRIALS,
        reference_rows=REFERENCE_ROWS,
        current_rows=CURRENT_ROWS,
        group=group,
    )


def test_disjoint_samples_of_the_same_photos_rarely_raise_embedding_drift(
    embedded_reference_pool: pd.DataFrame, embedded_calm_pool: pd.DataFrame
) -> None:
    got = _rate(embedded_reference_pool, embedded_calm_pool, EMBEDDING)
    assert got.features[EMBEDDING] <= 0.05 * TRIALS, got  # one hypothesis at <= 1 % by Holm
    assert got.rate <= 0.05, got  # the whole family, embedding included


@pytest.mark.parametrize("shift", sorted(SHIFTS))
def test_shifted_streams_are_still_caught_with_the_embedding_in_the_family(
    embedded_reference_pool: pd.DataFrame,
    embedded_shifted_pools: dict[str, pd.DataFrame],
    shift: str,
) -> None:
    got = _rate(embedded_reference_pool, embedded_shifted_pools[shift], EXPECTED_GROUP[shift])
    assert got.rate >= 0.95 and got.named_rate >= 0.95, got


# Measured at seeds 0..39: the input group was named in 0 of 40 matched-scene trials, the
# embedding in 40 (load_tests.drift_rates, on larger pools and 100 trials, prints the same
# table). With histogram matching alone (no focus or colour match) sharpness fired in 40 of 40.
# The bound leaves the match's approximation a little room (4 of 40), no more: a scene change
# the cheap features see as often as the embedding does would not need the embedding.
MATCHED_SCENE_INPUT_RATE = 0.1


def test_a_histogram_matched_scene_is_caught_by_the_embedding_not_the_features(
    embedded_reference_pool: pd.DataFrame, embedded_shifted_pools: dict[str, pd.DataFrame]
) -> None:
    scene = embedded_shifted_pools["matched_scene"]
    by_embedding = _rate(embedded_reference_pool, scene, EMBEDDING)
    by_input = _rate(embedded_reference_pool, scene, "input")
    assert by_embedding.named_rate >= 0.95, by_embedding
    assert by_input.named_rate <= MATCHED_SCENE_INPUT_RATE, by_input
    # The features the match is built to keep: light, colour and framing.
    for name in ("brightness", "contrast", "colorfulness", "width", "height", "aspect"):
        assert by_input.features[name] <= 0.05 * TRIALS, (name, by_input.features)
