"""Action versions judged by something independent of their generator: hand-labelled real tracks.

``action`` v1 is trained and held-out-tested on one generator, so its own metrics cannot tell a
generator artefact from a skill. The committed set in ``tests/data/action_labelled/`` is what the
real BlazePose detector (bootstrap's v1 and v2) and the serving tracker reported on 16 clips made
from the scikit-image photos, each track labelled by eye from a blind contact sheet (see
``build_tracks.py`` there). Nothing is regenerated here and no detector runs: the test scores
every action version the bootstrap builds on the committed tracks.

The set: 32 labelled tracks (12 walking, 10 standing, 10 crouching; no reaching, which a rigid
photo cannot show) plus 5 excluded detector artefacts. Measured for ``action`` v1 (seed 0):
accuracy 0.75 (24/32), balanced accuracy 0.75, recall walking 0.75 / standing 0.90 / crouching
0.60; the majority label (walking) scores 0.375. The bar, :func:`passes`, sits between: it
leaves room for two or three borderline tracks (top confidence ~0.54-0.6) to flip, and
``test_the_bar_fails_*`` show it fails constant predictors, every relabelling of the model's
outputs, the model fed motionless tracks, shuffled labels, and time run backwards.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from deployments.loader import load_model
from deployments.models.action_model import ActionModel
from deployments.types import ActionPrediction, Track, TrackPoint
from model_registry import settings
from model_registry.references.action_labelled import (
    DATA_DIR,
    LABELS_FILE,
    TRACKS_FILE,
    LabelledTrack,
    Score,
    load_labelled,
    load_tracks,
    score,
    score_predictions,
)
from model_registry.references.action_tracks import LABELS
from model_registry.references.bootstrap import built_model_dir, references

REPO = Path(__file__).resolve().parents[4]
ACTION_REFS = [r for r in references() if r.name == "action"]

ACCURACY_BAR = 0.65  # v1 measures 0.75; majority baseline 0.375
BALANCED_BAR = 0.65  # v1 measures 0.75; a one-label guesser gets 1/3
LABEL_BAR = 0.5  # least recall of any label with examples; v1's least is crouching, 0.60


def passes(s: Score) -> bool:
    """The bar every action version must clear on the labelled set."""
    per_label = s.per_label_accuracy()
    return (
        s.accuracy >= ACCURACY_BAR
        and s.balanced_accuracy() >= BALANCED_BAR
        and min(per_label.values()) >= LABEL_BAR
    )


@pytest.fixture(scope="module")
def items() -> list[LabelledTrack]:
    return load_labelled()


@pytest.fixture(scope="module")
def models() -> Iterator[dict[str, ActionModel]]:
    """Every bootstrap action version, from the bootstrap's own build cache (built if absent,
    ~15 s each), so what is scored is exactly what ``canaryserve bootstrap`` registers."""
    with pytest.MonkeyPatch.context() as mp:
        if not os.environ.get(settings.ENV_CACHE_DIR):
            mp.setenv(settings.ENV_CACHE_DIR, str(REPO / ".canaryserve" / "cache"))
        loaded: dict[str, ActionModel] = {}
        for ref in ACTION_REFS:
            model = load_model(built_model_dir(ref))
            assert isinstance(model, ActionModel)
            loaded[ref.key] = model
    yield loaded


@pytest.fixture(scope="module")
def v1(models: dict[str, ActionModel], items: list[LabelledTrack]) -> tuple[ActionModel, Score]:
    model = models["action-v1"]
    return model, score(model, model.labels, items)


# --- the committed set ---------------------------------------------------------------------


def test_the_committed_set_is_small_complete_and_labelled_by_eye(
    items: list[LabelledTrack],
) -> None:
    assert (DATA_DIR / TRACKS_FILE).stat().st_size < 300_000
    tracks = load_tracks()
    assert len(tracks) == 37  # 32 labelled + 5 artefacts (boxes on hands, chest, suit)
    counts = Counter(it.label for it in items)
    assert counts == {"walking": 12, "standing": 10, "crouching": 10}
    assert set(counts) <= set(LABELS)
    assert Counter(it.detector for it in items) == {"detector-v1": 16, "detector-v2": 16}
    assert len({it.clip for it in items}) == 16
    for it in items:
        assert it.seen.strip(), f"{it.key} has no note of what the labeller saw"
        assert len(it.track.points) >= 3 and it.track.frame_size == (640, 480)
        assert all(len(p.detection.keypoints) == 4 for p in it.track.points)


def test_labels_must_cover_exactly_the_tracks(tmp_path: Path) -> None:
    (tmp_path / TRACKS_FILE).write_bytes((DATA_DIR / TRACKS_FILE).read_bytes())
    text = (DATA_DIR / LABELS_FILE).read_text()
    (tmp_path / LABELS_FILE).write_text(text.replace('"walk-r-astronaut-rocket/', '"gone/', 1))
    with pytest.raises(ValueError, match=r"unlabelled.*walk-r-astronaut-rocket.*unknown.*gone/"):
        load_labelled(tmp_path)


# --- every action version against the bar --------------------------------------------------


def majority_baseline(items: list[LabelledTrack]) -> float:
    return max(Counter(it.label for it in items).values()) / len(items)


@pytest.mark.parametrize("key", [r.key for r in ACTION_REFS])
def test_action_version_clears_the_bar_on_labelled_real_tracks(
    key: str, models: dict[str, ActionModel], items: list[LabelledTrack]
) -> None:
    model = models[key]
    s = score(model, model.labels, items)
    print(f"\n{key} on {len(items)} hand-labelled real tracks:\n{s.summary()}")
    for detector in sorted({it.detector for it in items}):
        sub = [it for it in items if it.detector == detector]
        print(f"  tracks from {detector}: accuracy {score(model, model.labels, sub).accuracy:.3f}")
    baseline = majority_baseline(items)
    assert ACCURACY_BAR > baseline + 0.2  # the bar means something on this set
    assert passes(s), f"{key} is under the bar:\n{s.summary()}"


@pytest.mark.parametrize("key", [r.key for r in ACTION_REFS])
def test_confidence_is_lower_on_wrong_answers(
    key: str, models: dict[str, ActionModel], items: list[LabelledTrack]
) -> None:
    """Calibration sanity that can fail: a model sure of its mistakes would.

    Measured for v1: 0.949 right vs 0.894 wrong. It holds, but barely means "calibrated":
    wrong answers are still ~0.9 confident (4 of 8 above 0.96), so do not read the softmax
    score of a real track as a probability.
    """
    model = models[key]
    s = score(model, model.labels, items)
    right, wrong = s.mean_confidence(True), s.mean_confidence(False)
    print(f"\n{key}: mean top confidence right {right:.3f}, wrong {wrong:.3f}")
    assert wrong < right


# --- the bar is not trivially cleared ------------------------------------------------------


def constant(label: str, n: int) -> list[ActionPrediction]:
    return [ActionPrediction(label, 1.0, {label: 1.0}) for _ in range(n)]


def test_the_bar_fails_a_constant_predictor(items: list[LabelledTrack]) -> None:
    truth = [it.label for it in items]
    for label in LABELS:
        s = score_predictions(LABELS, truth, constant(label, len(items)))
        assert s.accuracy <= majority_baseline(items) < ACCURACY_BAR
        assert not passes(s)


def test_the_bar_fails_every_relabelling_of_the_models_outputs(
    v1: tuple[ActionModel, Score],
) -> None:
    """A manifest whose labels are swapped (any permutation but the identity) fails."""
    model, s = v1
    assert passes(s)
    for perm in itertools.permutations(range(len(model.labels))):
        if perm == tuple(range(len(model.labels))):
            continue
        swapped = replace(s, y_pred=np.array([perm[k] for k in s.y_pred]))
        assert not passes(swapped), f"labels permuted {perm} still pass"


def freeze(track: Track) -> Track:
    """The track with every frame's detection replaced by its first: no motion at all."""
    first = track.points[0].detection
    return replace(track, points=tuple(TrackPoint(p.frame_index, first) for p in track.points))


def reverse(track: Track) -> Track:
    """The same detections in the opposite order of time (a crouch becomes standing up)."""
    dets = [p.detection for p in reversed(track.points)]
    return replace(
        track,
        points=tuple(TrackPoint(p.frame_index, d) for p, d in zip(track.points, dets, strict=True)),
    )


def test_the_bar_fails_the_model_without_motion_or_with_time_reversed(
    v1: tuple[ActionModel, Score], items: list[LabelledTrack]
) -> None:
    model, _ = v1
    truth = [it.label for it in items]
    still = score_predictions(
        model.labels, truth, model.predict([freeze(it.track) for it in items])
    )
    assert still.accuracy < ACCURACY_BAR and not passes(still)  # measured 0.31: all "standing"
    back = score_predictions(
        model.labels, truth, model.predict([reverse(it.track) for it in items])
    )
    assert not passes(back)  # measured: crouching recall 0.2 (going up is not crouching)


def test_the_bar_fails_shuffled_labels(v1: tuple[ActionModel, Score]) -> None:
    _, s = v1
    rng = np.random.default_rng(0)
    shuffled = [replace(s, y_true=rng.permutation(s.y_true)) for _ in range(500)]
    accs = [x.accuracy for x in shuffled]
    print(f"\nshuffled labels: mean {np.mean(accs):.3f}, max {max(accs):.3f} (bar {ACCURACY_BAR})")
    assert max(accs) < ACCURACY_BAR
    assert not any(passes(x) for x in shuffled)
