"""The offline_accuracy evidence: both action versions scored on the hand-labelled tracks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from model_registry import settings
from model_registry.evaluation.labelled_actions import labelled_accuracy, with_derived_layouts
from model_registry.mlflow_store import MlflowModelStore
from model_registry.references.action_labelled import load_labelled
from model_registry.references.bootstrap import built_model_dir, references

REPO = Path(__file__).resolve().parents[4]


@pytest.fixture
def registry(store: MlflowModelStore, monkeypatch: pytest.MonkeyPatch) -> MlflowModelStore:
    """action v1 and v2 from the bootstrap's build cache (built if absent)."""
    if not os.environ.get(settings.ENV_CACHE_DIR):
        monkeypatch.setenv(settings.ENV_CACHE_DIR, str(REPO / ".canaryserve" / "cache"))
    for ref in [r for r in references() if r.name == "action"]:
        store.register(built_model_dir(ref))
    return store


def test_both_versions_on_the_same_labelled_tracks(registry: MlflowModelStore) -> None:
    scored = labelled_accuracy(registry, "action", 1, 2)
    items = load_labelled()
    assert scored.tracks == len(items) == 48
    assert (scored.champion.version, scored.challenger.version) == (1, 2)
    # Each version's recall per labelled action, on the labels present (no reaching, no other).
    labels = {"walking", "standing", "crouching"}
    assert set(scored.champion.per_label) == labels
    for s in (scored.champion, scored.challenger):
        assert s.balanced_accuracy == pytest.approx(sum(s.per_label.values()) / 3)
        assert 0.0 < s.mean_confidence < 0.99
    # The calibrated, 17-keypoint v2 is not worse than v1 by more than one labelled track per
    # action. Not "not worse at all": v2's training is deterministic on one CPU, but its float
    # reductions differ between instruction sets, and on 48 tracks that moves v2 by a track or
    # two. Measured: v1 0.833 everywhere; v2 0.854 on the machine this was first measured on,
    # 0.822 on an AVX2-only EPYC, 0.819 with torch forced to its scalar kernels.
    one_track = sum(1 / sum(it.label == label for it in items) for label in labels) / len(labels)
    assert scored.challenger.balanced_accuracy >= scored.champion.balanced_accuracy - one_track
    assert scored.champion.accuracy == pytest.approx(40 / 48)


def test_derived_layouts_are_added_to_coco_tracks_only() -> None:
    items = load_labelled()
    coco = [it for it in items if it.detector == "detector-v3"]
    blaze = next(it for it in items if it.detector == "detector-v1")
    derived = [
        {k.name for k in p.detection.keypoints}
        for it in coco
        for p in with_derived_layouts(it.track).points
    ]
    # Where hips and shoulders are seen (the cameraman; not the astronaut's upper-body photo),
    # BlazePose's four points join the 17 COCO ones.
    assert any({"mid_hip", "full_body", "mid_shoulder", "upper_body", "nose"} <= d for d in derived)
    assert all(len(d) in (17, 21) for d in derived)
    assert with_derived_layouts(blaze.track) == blaze.track  # nothing derivable from four points
