from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drift.evidently_adapter import compute_drift, is_p_value_method
from drift.features import image_features
from drift.verdict import DriftVerdict, FeatureDrift

COLUMNS = ["brightness", "contrast", "sharpness", "colorfulness"]


def _frames(n: int, seed: int, gain: float = 1.0) -> pd.DataFrame:
    """Features of ``n`` small synthetic frames; ``gain`` < 1 darkens every frame."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        base = rng.normal(130, 12)
        image = np.clip(rng.normal(base, 25, (24, 32, 3)), 0, 255) * gain
        rows.append(image_features(image.astype(np.uint8)))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return _frames(200, seed=1)


def test_same_distribution_gives_no_drift(reference: pd.DataFrame) -> None:
    verdict = compute_drift(reference, _frames(200, seed=2), columns=COLUMNS)
    assert verdict.status == "no_drift"
    assert verdict.drift_share < 0.5
    assert (verdict.reference_rows, verdict.current_rows) == (200, 200)
    assert [f.name for f in verdict.features] == COLUMNS
    brightness = verdict.feature("brightness")
    assert brightness.method == "K-S p_value"
    assert brightness.p_value == brightness.score
    # Holm: the feature is judged at the step level of its rank, alpha/4 ... alpha.
    assert verdict.alpha == 0.01
    assert any(brightness.threshold == pytest.approx(0.01 / k) for k in (1, 2, 3, 4))


def test_darkened_frames_drift_on_brightness(reference: pd.DataFrame, tmp_path: Path) -> None:
    verdict = compute_drift(
        reference,
        _frames(200, seed=3, gain=0.5),
        columns=COLUMNS,
        html_path=tmp_path / "r.html",
        json_path=tmp_path / "r.json",
    )
    assert verdict.status == "drift"
    assert "brightness" in verdict.drifted_features
    assert verdict.drift_share >= 0.5
    brightness = verdict.feature("brightness")
    assert brightness.drifted and brightness.score < brightness.threshold
    assert "<html" in (tmp_path / "r.html").read_text()[:2000].lower()
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["metrics"]
    json.dumps(verdict.to_dict())  # verdicts go to the API and the audit log as JSON


def test_one_drifted_feature_is_drift_by_the_family_rule_not_by_the_share_rule() -> None:
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({c: rng.normal(0, 1, 150) for c in "abcd"})
    cur = pd.DataFrame({c: rng.normal(0, 1, 150) for c in "abcd"})
    cur["a"] += 5
    verdict = compute_drift(ref, cur)
    assert verdict.drifted_features == ["a"]
    assert verdict.drift_share == pytest.approx(0.25)
    assert verdict.status == "drift" and verdict.alpha == 0.01
    # An explicit Evidently method keeps the old rule: a share of drifted columns, uncorrected.
    legacy = compute_drift(ref, cur, method="ks", threshold=0.05)
    assert legacy.status == "no_drift" and legacy.alpha is None
    assert legacy.feature("a").threshold == pytest.approx(0.05)
    assert compute_drift(ref, cur, method="ks", drift_share=0.25).status == "drift"


def test_large_reference_is_judged_by_a_distance_not_a_p_value() -> None:
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 1200)})
    cur = pd.DataFrame({"x": rng.normal(3, 1, 1200)})
    feature = compute_drift(ref, cur).feature("x")
    assert feature.method.startswith("Wasserstein")
    assert feature.p_value is None
    assert feature.drifted and feature.score >= feature.threshold


def test_too_few_rows_is_insufficient_data_without_a_report(
    reference: pd.DataFrame, tmp_path: Path
) -> None:
    verdict = compute_drift(
        reference, reference.head(10), columns=COLUMNS, html_path=tmp_path / "r.html"
    )
    assert verdict.status == "insufficient_data"
    assert verdict.features == ()
    assert verdict.current_rows == 10
    assert "10" in (verdict.reason or "")
    assert not (tmp_path / "r.html").exists()


def test_datetime_and_label_columns() -> None:
    rng = np.random.default_rng(6)
    ts = pd.Timestamp("2026-01-01", tz="UTC")
    ref = pd.DataFrame({"ts": ts, "label": rng.choice(["walk", "sit"], 100)})
    cur = pd.DataFrame({"ts": ts + pd.Timedelta(days=1), "label": ["fall"] * 100})
    verdict = compute_drift(ref, cur)
    assert [f.name for f in verdict.features] == ["label"]
    assert verdict.status == "drift"


def test_unknown_column_is_rejected_with_its_name(reference: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="nope"):
        compute_drift(reference, reference, columns=["nope"])


def test_verdict_to_dict_replaces_non_finite_scores() -> None:
    verdict = DriftVerdict(
        status="no_drift",
        reference_rows=50,
        current_rows=50,
        features=(FeatureDrift("x", "K-S p_value", float("nan"), 0.05, False, float("nan")),),
    )
    as_dict = verdict.to_dict()
    assert as_dict["features"][0]["score"] is None
    assert as_dict["drifted_features"] == []
    json.dumps(as_dict)


def test_p_value_method_names() -> None:
    assert is_p_value_method("K-S p_value")
    assert is_p_value_method("Mann-Whitney U-rank test")
    assert not is_p_value_method("Wasserstein distance (normed)")
    assert not is_p_value_method("Jensen-Shannon distance")


def test_groups_judge_input_and_prediction_drift_separately() -> None:
    rng = np.random.default_rng(0)
    n = 120

    def frame(shift: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "brightness": rng.normal(120 - shift, 10, n),
                "contrast": rng.normal(50 - shift / 2, 5, n),
                "width": rng.normal(640, 5, n),
                "pred_count": rng.normal(1, 0.3, n),
                "pred_mean_confidence": rng.normal(0.8, 0.05, n),
                "pred_box_area_share": rng.normal(0.1, 0.02, n),
            }
        )

    reference, dark = frame(0), frame(60)
    flat = compute_drift(reference, dark, method="ks")  # 2 of 6 features: below the share
    assert flat.status == "no_drift" and set(flat.drifted_features) == {"brightness", "contrast"}
    assert compute_drift(reference, dark).status == "drift"  # the family rule: any feature
    groups = {
        "input": ["brightness", "contrast", "width"],
        "prediction": ["pred_count", "pred_mean_confidence", "pred_box_area_share"],
    }
    for method in (None, "ks"):
        grouped = compute_drift(reference, dark, groups=groups, method=method)
        assert grouped.status == "drift"
        assert grouped.group_shares["input"] == pytest.approx(2 / 3)
        assert grouped.group_shares["prediction"] == 0.0
        assert grouped.to_dict()["group_shares"] == grouped.group_shares
        assert grouped.drifted_groups == ["input"]


def test_a_verdict_serialises_every_field_under_its_documented_name() -> None:
    feature = FeatureDrift(
        name="brightness",
        method="K-S p_value",
        score=1e-13,
        threshold=0.05,
        drifted=True,
        p_value=1e-13,
    )
    verdict = DriftVerdict(
        status="drift",
        reference_rows=200,
        current_rows=40,
        drift_share=1.0,
        drift_share_threshold=0.5,
        features=(feature,),
        workspace_run="run-7",
        group_shares={"input": 1.0, "prediction": 0.0},
        alpha=0.01,
    )
    assert verdict.to_dict() == {
        "status": "drift",
        "drift_share": 1.0,
        "drift_share_threshold": 0.5,
        "drifted_features": ["brightness"],
        "features": [
            {
                "name": "brightness",
                "method": "K-S p_value",
                "score": 1e-13,
                "threshold": 0.05,
                "drifted": True,
                "p_value": 1e-13,
            }
        ],
        "reference_rows": 200,
        "current_rows": 40,
        "reason": None,
        "workspace_run": "run-7",
        "group_shares": {"input": 1.0, "prediction": 0.0},
        "drifted_groups": ["input"],
        "alpha": 0.01,
    }
    with pytest.raises(
        KeyError, match=r"Feature 'contrast' is not in this verdict; have \['brightness'\]"
    ):
        verdict.feature("contrast")
