"""ActionModel over the trained ``action`` v1: batching, transfer to unseen tracks, check_io."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from deployments.loader import load_model
from deployments.models.action_model import ActionModel
from deployments.runtime import RuntimeSpec
from deployments.types import Detection, Keypoint, Track, TrackPoint
from model_registry.manifest import Manifest
from model_registry.references.action_tracks import LABELS, generate_track
from model_registry.references.action_training import build_action_v1
from serving.errors import InvalidInput, ManifestError, ModelValidationError
from serving.pipelines.tracker import track_detections


def built_action_v1(factory: pytest.TempPathFactory) -> Path:
    """The default ``action`` v1 (seed 0), built once per session (shared with
    tests/unit/model_registry/test_train_action.py through the session's base temp dir)."""
    out = factory.getbasetemp() / "action-v1-seed0"
    if not (out / "manifest.yaml").is_file():
        build_action_v1(out, seed=0)
    return out


@pytest.fixture(scope="module")
def action_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_action_v1(tmp_path_factory)


@pytest.fixture(scope="module")
def model(action_dir: Path) -> ActionModel:
    loaded = load_model(action_dir)
    assert isinstance(loaded, ActionModel)
    return loaded


def with_manifest(src: Path, dst: Path, **update: object) -> Path:
    """A copy of the model dir whose manifest has ``update`` applied."""
    shutil.copytree(src, dst)
    m = Manifest.load(src)
    m.model_copy(update=update).dump(dst)
    return dst


def rigid_clip(step_frac: float, n: int = 16, fps: float = 10.0, seed: int = 0) -> Track:
    """What the detector reports for a pasted photo slid across a canvas (the platform's clip
    test): a fixed upper-body geometry the trainer never generated (huge body circle, clipped
    body_box, the hip below the photo), moved by ``step_frac`` of the frame width per frame,
    plus 1-2 px detector jitter."""
    rng = np.random.default_rng(seed)
    width, height = 1600, 800
    points = []
    for i in range(n):
        dx = 20 + step_frac * width * i + rng.normal(0, 1.5)
        dy = rng.normal(0, 1.5)
        hip = (dx + 270, 760 + dy)
        r = 330 + rng.normal(0, 3)
        full = (hip[0] + 40, hip[1] - r)
        det = Detection(
            box=(dx + 180, 120 + dy, dx + 340, 280 + dy),
            score=0.95,
            keypoints=(
                Keypoint("mid_hip", *hip),
                Keypoint("full_body", *full),
                Keypoint("mid_shoulder", dx + 250, 380 + dy),
                Keypoint("upper_body", dx + 230, 60 + dy),
            ),
            body_box=(
                max(hip[0] - r, 0),
                max(hip[1] - r, 0),
                min(hip[0] + r, width),
                min(hip[1] + r, height),
            ),
        )
        points.append(TrackPoint(i, det))
    return Track(track_id=0, points=tuple(points), frame_size=(width, height), fps=fps)


# --- predictions ---------------------------------------------------------------------------


def test_check_io_passes_for_the_trained_model(model: ActionModel) -> None:
    model.check_io()
    assert model.runtime.provider == "CPUExecutionProvider"


def test_a_batch_is_one_ort_call_with_softmax_scores(model: ActionModel) -> None:
    rng = np.random.default_rng(99)
    tracks = [generate_track(rng, label, track_id=i) for i, label in enumerate(LABELS * 3)]
    before = model.ort_calls
    preds = model.predict(tracks)
    assert model.ort_calls == before + 1
    assert len(preds) == len(tracks)
    for p in preds:
        assert list(p.scores) == list(LABELS)
        assert sum(p.scores.values()) == pytest.approx(1.0, abs=1e-6)
        assert p.label == max(p.scores, key=p.scores.__getitem__)
        assert p.confidence == p.scores[p.label]


def test_empty_batch_makes_no_ort_call(model: ActionModel) -> None:
    before = model.ort_calls
    assert model.predict([]) == []
    assert model.ort_calls == before


@pytest.mark.parametrize("with_pose", [True, False])
def test_fresh_walking_and_standing_tracks_are_told_apart(
    model: ActionModel, with_pose: bool
) -> None:
    # A seed far from the training data's (0); 30 of each.
    rng = np.random.default_rng(20_261_123)
    labels = ["walking", "standing"] * 30
    tracks = [generate_track(rng, lab, with_pose=with_pose) for lab in labels]
    got = [p.label for p in model.predict(tracks)]
    accuracy = np.mean([g == want for g, want in zip(got, labels, strict=True)])
    assert accuracy >= 0.9, list(zip(got, labels, strict=True))


@pytest.mark.parametrize("fps", [5.0, 10.0, 30.0])
@pytest.mark.parametrize("step", [0.02, 0.04, -0.06])
def test_a_slid_photo_walks(model: ActionModel, fps: float, step: float) -> None:
    pred = model.predict([rigid_clip(step, fps=fps)])[0]
    assert pred.label == "walking", pred.scores


@pytest.mark.parametrize("fps", [5.0, 10.0, 30.0])
def test_a_still_photo_stands(model: ActionModel, fps: float) -> None:
    preds = model.predict([rigid_clip(0.0, fps=fps, seed=s) for s in range(3)])
    assert [p.label for p in preds] == ["standing"] * 3, [p.scores for p in preds]


def test_example_input_predicts(model: ActionModel) -> None:
    (pred,) = model.predict([model.example_input()])
    assert pred.label == "walking"


def test_bad_inputs_are_client_errors(model: ActionModel) -> None:
    with pytest.raises(InvalidInput, match="no points"):
        model.predict([Track(7, (), (640, 480), 10.0)])
    with pytest.raises(InvalidInput, match="not a Track"):
        model.predict(["walking"])  # type: ignore[list-item]


def test_real_detector_on_a_moving_photo(
    detector_dirs: dict[str, Path], model: ActionModel
) -> None:
    """End to end without Ray: BlazePose on skimage's astronaut slid across / held on a canvas,
    the tracker, then this model."""
    import skimage.data

    detector = load_model(detector_dirs["v1"])
    photo = skimage.data.astronaut()
    ph, pw = photo.shape[:2]
    rng = np.random.default_rng(0)

    def clip(step: float) -> list[np.ndarray]:
        frames = []
        for i in range(16):
            frame = np.full((768, 1536, 3), 40, np.uint8)
            x = int(10 + step * 1536 * i + rng.integers(-2, 3))
            y = (768 - ph) // 2 + int(rng.integers(-2, 3))
            frame[y : y + ph, x : x + pw] = photo
            frames.append(frame)
        return frames

    for step, want in [(0.04, "walking"), (0.0, "standing")]:
        tracks = track_detections(detector.predict(clip(step)), (1536, 768), fps=10.0)
        assert len(tracks) == 1 and len(tracks[0].points) >= 14
        (pred,) = model.predict(tracks)
        assert pred.label == want, pred.scores


# --- check_io ------------------------------------------------------------------------------


def test_check_io_refuses_wrong_label_count(action_dir: Path, tmp_path: Path) -> None:
    m = load_model(
        with_manifest(action_dir, tmp_path / "m", labels=["walking", "standing", "running"])
    )
    with pytest.raises(ModelValidationError, match=r"output dim 1 is 4, manifest says 3"):
        m.check_io()


def test_check_io_refuses_reordered_labels(action_dir: Path, tmp_path: Path) -> None:
    # Same count, so shapes agree; the labels stamped into the ONNX file catch it.
    swapped = ["standing", "walking", "reaching", "crouching"]
    m = load_model(with_manifest(action_dir, tmp_path / "m", labels=swapped))
    with pytest.raises(ModelValidationError, match="ONNX metadata labels"):
        m.check_io()


def test_check_io_refuses_wrong_sequence_length(action_dir: Path, tmp_path: Path) -> None:
    m0 = Manifest.load(action_dir)
    m = load_model(
        with_manifest(
            action_dir,
            tmp_path / "m",
            input=m0.input.model_copy(update={"width": 32}),
            preprocess={**m0.preprocess, "seq_len": 32},
        )
    )
    with pytest.raises(ModelValidationError, match="input dim 1 is 16, manifest says 32"):
        m.check_io()


def test_check_io_refuses_other_features(action_dir: Path, tmp_path: Path) -> None:
    m0 = Manifest.load(action_dir)
    features = list(m0.preprocess["features"])
    features[0] = "speed"
    m = load_model(
        with_manifest(
            action_dir, tmp_path / "m", preprocess={**m0.preprocess, "features": features}
        )
    )
    with pytest.raises(ModelValidationError, match="differ from the features this server"):
        m.check_io()


def test_check_io_refuses_wrong_layout(action_dir: Path, tmp_path: Path) -> None:
    m0 = Manifest.load(action_dir)
    m = load_model(
        with_manifest(
            action_dir, tmp_path / "m", input=m0.input.model_copy(update={"layout": "NHWC"})
        )
    )
    with pytest.raises(ModelValidationError, match="layout must be NTF"):
        m.check_io()


def test_unknown_preprocess_key_is_a_manifest_error(action_dir: Path, tmp_path: Path) -> None:
    m0 = Manifest.load(action_dir)
    path = with_manifest(action_dir, tmp_path / "m", preprocess={**m0.preprocess, "fps": 10})
    with pytest.raises(ManifestError, match="fps"):
        ActionModel(path, Manifest.load(path), RuntimeSpec())


def test_missing_artifact_is_a_validation_error(action_dir: Path, tmp_path: Path) -> None:
    path = with_manifest(action_dir, tmp_path / "m")
    (path / "model.onnx").unlink()
    with pytest.raises(ModelValidationError, match="missing"):
        load_model(path)
