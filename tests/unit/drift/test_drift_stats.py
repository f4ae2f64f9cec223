"""The statistics of a drift verdict: per-feature tests by sample size, Holm, calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from drift import statistics as stats
from drift.evidently_adapter import compute_drift


def test_holm_steps_down_and_stops_at_the_first_hypothesis_it_keeps() -> None:
    rejected, levels = stats.holm([0.04, 0.01, 0.045], alpha=0.05)
    # Sorted: 0.01 < 0.05/3 (rejected), 0.04 >= 0.05/2 (kept), so 0.045 is kept though < 0.05.
    assert rejected == [False, True, False]
    assert levels == pytest.approx([0.05 / 2, 0.05 / 3, 0.05])
    assert stats.holm([0.001, 0.01, 0.02, 0.5], alpha=0.05)[0] == [True, True, True, False]
    assert stats.holm([], alpha=0.05) == ([], [])


def test_the_test_is_chosen_by_sample_size_and_type() -> None:
    assert stats.method_for(999, 5000, numeric=True) == stats.KS
    assert stats.method_for(5000, 999, numeric=True) == stats.KS
    assert stats.method_for(1000, 1000, numeric=True) == stats.WASSERSTEIN
    assert stats.method_for(5000, 5000, numeric=False) == stats.CHI_SQUARE
    assert stats.is_numeric(pd.Series([1.0, 2.0]))
    assert not stats.is_numeric(pd.Series([True, False]))
    assert not stats.is_numeric(pd.Series(["walk", "sit"]))


def test_judge_holds_p_values_to_holm_and_distances_to_their_threshold() -> None:
    scored = [("a", stats.KS, 0.001), ("b", stats.KS, 0.2), ("w", stats.WASSERSTEIN, 0.12)]
    judged = stats.judge(
        scored, {"w": 0.1}, alpha=0.01, groups={"input": ["a", "b"], "prediction": ["w"]}
    )
    assert [f.drifted for f in judged.features] == [True, False, True]
    assert [f.threshold for f in judged.features] == pytest.approx([0.01 / 2, 0.01, 0.1])
    assert judged.drifted and judged.groups == {"input": 0.5, "prediction": 1.0}
    assert judged.drifted_groups == ["input", "prediction"]
    assert [f.is_p_value for f in judged.features] == [True, True, False]
    calm = stats.judge([("a", stats.KS, 0.5), ("w", stats.WASSERSTEIN, 0.1)], {"w": 0.1001})
    assert not calm.drifted and calm.drifted_groups == [] and calm.alpha == stats.ALPHA
    for alpha in (0.0, 1.0):
        with pytest.raises(ValueError, match=f"alpha has value {alpha!r}"):
            stats.judge(scored, {"w": 0.1}, alpha=alpha)


def test_a_calibrated_distance_threshold_shrinks_with_more_rows_but_not_below_the_floor() -> None:
    rng = np.random.default_rng(0)
    small = stats.calibrated_threshold(rng.normal(0, 1, 400), 400, alpha=0.001)
    large = stats.calibrated_threshold(rng.normal(0, 1, 4000), 4000, alpha=0.001)
    assert small > large >= stats.MIN_EFFECT
    assert small > stats.MIN_EFFECT  # 400 rows: the null distance, not the floor, decides


def test_large_samples_tolerate_a_negligible_shift_and_catch_a_real_one() -> None:
    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 3000), "y": rng.normal(5, 2, 3000)})
    same = pd.DataFrame({"x": rng.normal(0.03, 1, 3000), "y": rng.normal(5, 2, 3000)})
    moved = pd.DataFrame({"x": rng.normal(0.4, 1, 3000), "y": rng.normal(5, 2, 3000)})
    calm = stats.decide(reference, same, ["x", "y"])
    assert not calm.drifted and calm.features[0].method == stats.WASSERSTEIN
    assert stats.decide(reference, moved, ["x", "y"]).drifted_groups == []  # no groups given
    assert [f.drifted for f in stats.decide(reference, moved, ["x", "y"]).features] == [
        True,
        False,
    ]


def test_labels_use_a_two_sample_chi_square() -> None:
    ref = pd.Series(["walk"] * 60 + ["sit"] * 40)
    assert stats.score(ref, pd.Series(["walk"] * 55 + ["sit"] * 45), stats.CHI_SQUARE) > 0.1
    assert stats.score(ref, pd.Series(["fall"] * 100), stats.CHI_SQUARE) < 1e-6
    assert stats.chi_square_p(pd.Series(["a"] * 5), pd.Series(["a"] * 5)) == 1.0


def test_feature_columns_skip_meta_and_empty_columns() -> None:
    ref = pd.DataFrame({"ts": [1, 2], "x": [1.0, 2.0], "pred_c": [1.0, None], "pred_n": [None] * 2})
    cur = pd.DataFrame({"ts": [3, 4], "x": [1.0, 2.0], "pred_c": [0.5, 0.2], "pred_n": [1.0, 2]})
    assert stats.feature_columns(ref, cur, skip=["ts"]) == ["x", "pred_c"]
    assert stats.feature_columns(ref, cur, prefix="pred_") == ["pred_c"]


@pytest.mark.parametrize("rows", [200, 1200])
def test_evidently_scores_are_the_scores_the_trials_judge(rows: int) -> None:
    """The seeded trials use drift.statistics alone; a report scores the same numbers in
    Evidently."""
    rng = np.random.default_rng(2)
    reference = pd.DataFrame({"a": rng.normal(0, 1, rows), "b": rng.exponential(1, rows)})
    current = pd.DataFrame({"a": rng.normal(0.2, 1, rows), "b": rng.exponential(1.1, rows)})
    verdict = compute_drift(reference, current)
    ours = stats.decide(reference, current, ["a", "b"])
    for mine, theirs in zip(ours.features, verdict.features, strict=True):
        assert (theirs.name, theirs.method) == (mine.name, mine.method)
        assert theirs.score == pytest.approx(mine.score, rel=1e-6)
        assert (theirs.threshold, theirs.drifted) == (pytest.approx(mine.threshold), mine.drifted)
    assert verdict.status == ("drift" if ours.drifted else "no_drift")
