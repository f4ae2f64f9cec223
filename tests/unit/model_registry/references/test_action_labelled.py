"""Action versions judged by something independent of their generator: hand-labelled real tracks.

``action`` v1 is trained and held-out-tested on one generator, so its own metrics cannot tell a
generator artefact from a skill. The committed set in ``tests/data/action_labelled/`` is what the
real detectors (bootstrap's BlazePose v1 and v2, YOLO11n-pose v3) and the serving tracker
reported on 16 clips made from the scikit-image photos, each track labelled by eye from a blind
contact sheet (see ``build_tracks.py`` there). Nothing is regenerated here and no detector runs:
the test scores every action version the bootstrap builds on the committed tracks, each track
handed over as a pipeline would (its keypoints plus the layouts derivable from them, so v1 sees
BlazePose's four points derived from v3's 17 COCO ones).

The set: 48 labelled tracks (18 walking, 15 standing, 15 crouching; no reaching, which a rigid
photo cannot show; 16 from each detector) plus 5 excluded BlazePose artefacts. Measured for
``action`` v1 (seed 0): accuracy 0.833 (40/48; 13/16 on v1's tracks, 11/16 on v2's, 16/16 on
v3's), balanced accuracy 0.833, recall walking 0.833 / standing 0.933 / crouching 0.733; the
majority label (walking) scores 0.375. The bar, :func:`passes`, sits between: it leaves room for
the borderline tracks (top confidence ~0.51-0.6) to flip, and ``test_the_bar_fails_*`` show it
fails constant predictors, every relabelling of the model's outputs, the model fed motionless
tracks, shuffled labels, and time run backwards.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from deployments.loader import load_model
from deployments.models.action_model import ActionModel
from deployments.models.keypoints import BLAZEPOSE4, COCO17, MIN_VISIBLE
from deployments.types import ActionPrediction, Detection, Keypoint, Track, TrackPoint
from model_registry import settings
from model_registry.evaluation.labelled_actions import with_derived_layouts
from model_registry.references.action_labelled import (
    DATA_DIR,
    FORMAT,
    LABELS_FILE,
    TRACKS_FILE,
    LabelledTrack,
    Score,
    dump_tracks,
    load_labelled,
    load_tracks,
    score,
    score_predictions,
)
from model_registry.references.action_tracks import LABELS
from model_registry.references.bootstrap import built_model_dir, references

REPO = Path(__file__).resolve().parents[4]
ACTION_REFS = [r for r in references() if r.name == "action"]

ACCURACY_BAR = 0.65  # v1 measures 0.833; majority baseline 0.375
BALANCED_BAR = 0.65  # v1 measures 0.833; a one-label guesser gets 1/3
LABEL_BAR = 0.5  # least recall of any label with examples; v1's least is crouching, 0.733
DETECTORS = ("detector-v1", "detector-v2", "detector-v3")


def passes(s: Score) -> bool:
    """The bar every action version must clear on the labelled set."""
    per_label = s.per_label_accuracy()
    return (
        s.accuracy >= ACCURACY_BAR
        and s.balanced_accuracy() >= BALANCED_BAR
        and min(per_label.values()) >= LABEL_BAR
    )


@pytest.fixture(scope="module")
def labelled() -> list[LabelledTrack]:
    """The committed labelled tracks as stored (each detector's own keypoints)."""
    return load_labelled()


@pytest.fixture(scope="module")
def items(labelled: list[LabelledTrack]) -> list[LabelledTrack]:
    """The labelled tracks as a pipeline hands them to an action model: with every keypoint
    layout derivable from the detector's (BlazePose's four points from v3's 17 COCO ones)."""
    return [replace(it, track=with_derived_layouts(it.track)) for it in labelled]


@pytest.fixture(scope="module")
def models() -> Iterator[Callable[[str], ActionModel]]:
    """Bootstrap action versions by key, from the bootstrap's own build cache (built on first
    use if absent, ~15 s each), so what is scored is exactly what ``canaryserve bootstrap``
    registers; only the versions a selected test asks for are built."""
    refs = {r.key: r for r in ACTION_REFS}
    loaded: dict[str, ActionModel] = {}

    def get(key: str) -> ActionModel:
        if key not in loaded:
            model = load_model(built_model_dir(refs[key]))
            assert isinstance(model, ActionModel)
            loaded[key] = model
        return loaded[key]

    with pytest.MonkeyPatch.context() as mp:
        if not os.environ.get(settings.ENV_CACHE_DIR):
            mp.setenv(settings.ENV_CACHE_DIR, str(REPO / ".canaryserve" / "cache"))
        yield get


@pytest.fixture(scope="module")
def v1(
    models: Callable[[str], ActionModel], items: list[LabelledTrack]
) -> tuple[ActionModel, Score]:
    model = models("action-v1")
    return model, score(model, model.labels, items)


# --- the committed set ---------------------------------------------------------------------


def test_the_committed_set_is_small_complete_and_labelled_by_eye(
    labelled: list[LabelledTrack],
) -> None:
    assert (DATA_DIR / TRACKS_FILE).stat().st_size < 400_000
    assert json.loads((DATA_DIR / TRACKS_FILE).read_text())["format"] == FORMAT == 2
    tracks = load_tracks()
    assert len(tracks) == 53  # 48 labelled + 5 BlazePose artefacts (boxes on hands, chest, suit)
    assert Counter(k.split("/")[1] for k in tracks) == {
        "detector-v1": 16,
        "detector-v2": 21,
        "detector-v3": 16,
    }
    counts = Counter(it.label for it in labelled)
    assert counts == {"walking": 18, "standing": 15, "crouching": 15}
    assert set(counts) <= set(LABELS)
    assert Counter(it.detector for it in labelled) == dict.fromkeys(DETECTORS, 16)
    assert Counter((it.detector, it.label) for it in labelled if it.detector == "detector-v3") == {
        ("detector-v3", "walking"): 6,
        ("detector-v3", "standing"): 5,
        ("detector-v3", "crouching"): 5,
    }
    assert len({it.clip for it in labelled}) == 16
    for it in labelled:
        assert it.seen.strip(), f"{it.key} has no note of what the labeller saw"
        assert len(it.track.points) >= 3 and it.track.frame_size == (640, 480)
        names = COCO17 if it.detector == "detector-v3" else BLAZEPOSE4
        assert all(tuple(k.name for k in p.detection.keypoints) == names for p in it.track.points)


def test_every_v3_track_carries_the_17_coco_points_with_confidences() -> None:
    v3 = {k: t for k, t in load_tracks().items() if k.split("/")[1] == "detector-v3"}
    assert len(v3) == 16
    confidences = []
    for key, track in v3.items():
        for p in track.points:
            det = p.detection
            assert tuple(k.name for k in det.keypoints) == COCO17, key
            assert det.body_box is None  # YOLO's box is the whole person
            for k in det.keypoints:
                assert k.score is not None and 0.0 <= k.score <= 1.0, (key, k)
                confidences.append(k.score)
    # The astronaut's legs are out of frame: some points are unseen, so the confidences are
    # real information, not a constant.
    assert min(confidences) < MIN_VISIBLE < max(confidences)


def test_blazepose_tracks_keep_xy_keypoints_without_confidences() -> None:
    for key, track in load_tracks().items():
        if key.split("/")[1] == "detector-v3":
            continue
        for p in track.points:
            assert all(k.score is None for k in p.detection.keypoints), key
            assert p.detection.body_box is not None, key


def _track(track_id: int, dets: list[Detection]) -> Track:
    return Track(
        track_id, tuple(TrackPoint(i, d) for i, d in enumerate(dets)), (640, 480), fps=10.0
    )


def test_dump_and_load_round_trip_a_coco17_detection_with_confidences(tmp_path: Path) -> None:
    coco = Detection(
        box=(10.123, 20.0, 110.456, 300.0),
        score=0.876,
        keypoints=tuple(
            Keypoint(n, 50.0 + i, 40.0 + 10 * i, None if i == 3 else round(0.05 * i, 2))
            for i, n in enumerate(COCO17)
        ),
    )
    blaze = Detection(
        box=(1.0, 2.0, 3.0, 4.0),
        score=0.5,
        keypoints=tuple(Keypoint(n, float(i), float(i + 1)) for i, n in enumerate(BLAZEPOSE4)),
        body_box=(0.0, 0.0, 9.0, 9.0),
    )
    bare = Detection(box=(5.0, 6.0, 7.0, 8.0), score=0.3)  # no keypoints at all
    clips = {"c": {"yolo": [_track(0, [coco, bare])], "blaze": [_track(1, [blaze])]}}
    path = tmp_path / TRACKS_FILE
    dump_tracks(path, clips, {"c": {"kind": "test"}})
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT
    assert data["detectors"] == {
        "yolo": {"keypoints": list(COCO17), "confidence": True},
        "blaze": {"keypoints": list(BLAZEPOSE4), "confidence": False},
    }
    row = data["clips"]["c"]["tracks"]["yolo"][0]["detections"][0]
    assert len(row) == 5 + 3 * 17 and row[:5] == [10.12, 20.0, 110.46, 300.0, 0.88]
    assert row[5 + 3 * 3 + 2] is None  # a keypoint without a confidence stays without one
    back = load_tracks(path)
    got = back["c/yolo/0"].points[0].detection
    assert got.box == (10.12, 20.0, 110.46, 300.0) and got.score == 0.88
    assert got.keypoints == coco.keypoints  # names, x, y and confidences (2-decimal values)
    assert back["c/yolo/0"].points[1].detection == bare
    assert back["c/blaze/1"].points[0].detection == blaze
    assert back["c/yolo/0"].frame_size == (640, 480) and back["c/yolo/0"].fps == 10.0


def test_one_detector_with_two_keypoint_layouts_is_refused(tmp_path: Path) -> None:
    a = Detection((0, 0, 1, 1), 0.9, keypoints=(Keypoint("nose", 0.0, 0.0, 0.9),))
    b = Detection((0, 0, 1, 1), 0.9, keypoints=(Keypoint("mid_hip", 0.0, 0.0),))
    with pytest.raises(ValueError, match="in one detector"):
        dump_tracks(tmp_path / TRACKS_FILE, {"c": {"d": [_track(0, [a, b])]}}, {"c": {}})


def test_format_1_files_still_load(tmp_path: Path) -> None:
    """The format-1 file (one x/y name list for all its detectors) as the BlazePose tracks were
    committed before v3 joined: written back from the format-2 file, it loads the same tracks."""
    data = json.loads((DATA_DIR / TRACKS_FILE).read_text())
    assert data["detectors"]["detector-v1"]["keypoints"] == list(BLAZEPOSE4)
    old = {
        "format": 1,
        "keypoints": list(BLAZEPOSE4),
        "clips": {
            clip: {
                "spec": entry["spec"],
                "tracks": {d: ts for d, ts in entry["tracks"].items() if d != "detector-v3"},
            }
            for clip, entry in data["clips"].items()
        },
    }
    (tmp_path / TRACKS_FILE).write_text(json.dumps(old))
    now = {k: t for k, t in load_tracks().items() if k.split("/")[1] != "detector-v3"}
    assert load_tracks(tmp_path / TRACKS_FILE) == now
    assert len(now) == 37


def test_unknown_formats_and_undeclared_detectors_are_refused(tmp_path: Path) -> None:
    path = tmp_path / TRACKS_FILE
    path.write_text(json.dumps({"format": 3, "clips": {}}))
    with pytest.raises(ValueError, match="format 3"):
        load_tracks(path)
    path.write_text(
        json.dumps({"format": 2, "detectors": {}, "clips": {"c": {"tracks": {"d": []}}}})
    )
    with pytest.raises(ValueError, match="undeclared 'd'"):
        load_tracks(path)


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
    key: str, models: Callable[[str], ActionModel], items: list[LabelledTrack]
) -> None:
    model = models(key)
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
    key: str, models: Callable[[str], ActionModel], items: list[LabelledTrack]
) -> None:
    """Calibration sanity that can fail: a model sure of its mistakes would.

    Measured for v1: 0.957 right vs 0.894 wrong. It holds, but barely means "calibrated":
    wrong answers are still ~0.9 confident (4 of 8 above 0.96), so do not read the softmax
    score of a real track as a probability.
    """
    model = models(key)
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
    assert not passes(back)  # measured: crouching recall 0.47 (going up is not crouching)


def test_the_bar_fails_shuffled_labels(v1: tuple[ActionModel, Score]) -> None:
    _, s = v1
    rng = np.random.default_rng(0)
    shuffled = [replace(s, y_true=rng.permutation(s.y_true)) for _ in range(500)]
    accs = [x.accuracy for x in shuffled]
    print(f"\nshuffled labels: mean {np.mean(accs):.3f}, max {max(accs):.3f} (bar {ACCURACY_BAR})")
    assert max(accs) < ACCURACY_BAR
    assert not any(passes(x) for x in shuffled)
