"""YOLO-pose decoding through DetectorModel, with a tiny ONNX graph of the export's exact I/O."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deployments.models import yolo_pose
from deployments.models.detector_model import DetectorModel
from deployments.runtime import RuntimeSpec
from model_registry.manifest import InputSpec, Manifest
from serving.errors import ModelFailure, ModelValidationError

SIZE, ANCHORS = 64, 8


def constant_output() -> np.ndarray:
    """[1, 56, 8]: one person (anchor 2), a weaker duplicate (3), one under threshold (5)."""
    out = np.zeros((1, 56, ANCHORS), np.float32)
    kps = np.stack([np.arange(17) + 20.0, np.arange(17) + 30.0, np.full(17, 0.8)], axis=1)
    out[0, :, 2] = [32, 40, 16, 24, 0.9, *kps.ravel()]
    out[0, :, 3] = [33, 41, 16, 24, 0.6, *kps.ravel()]
    out[0, :, 5] = [10, 10, 8, 8, 0.3, *kps.ravel()]
    return out


def write_model(path: Path, batch: str | int = "B", size: int = SIZE) -> Path:
    """``images [B,3,size,size]`` -> ``output0 [B,56,8]`` = 0 * mean(images) + constant."""
    const = numpy_helper.from_array(constant_output(), "const")
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Mul", ["m", "zero"], ["z4"]),
        helper.make_node("Squeeze", ["z4", "ax"], ["z"]),  # [B, 1, 1]
        helper.make_node("Add", ["z", "const"], ["output0"]),
    ]
    ax = numpy_helper.from_array(np.array([3], np.int64), "ax")
    graph = helper.make_graph(
        nodes,
        "yolo-pose-stub",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, 56, ANCHORS])],
        [const, zero, ax],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def make(tmp_path: Path, **overrides) -> DetectorModel:
    write_model(tmp_path / "yolo.onnx", **overrides.pop("model", {}))
    manifest = Manifest(
        name="yolo-pose",
        task="detection",
        artifacts={"model": "yolo.onnx"},
        input=overrides.pop("input", InputSpec(width=SIZE, height=SIZE, layout="NCHW")),
        labels=["person"],
        postprocess=overrides.pop("postprocess", {"decoder": "yolo_pose", "score_threshold": 0.5}),
    )
    manifest.dump(tmp_path)
    return DetectorModel(tmp_path, manifest, RuntimeSpec())


def test_decode_keeps_the_best_of_overlapping_boxes() -> None:
    boxes, scores, kps = yolo_pose.decode(constant_output()[0], score_threshold=0.5)
    np.testing.assert_allclose(boxes, [[24, 28, 40, 52]])
    np.testing.assert_allclose(scores, [0.9], rtol=1e-6)
    assert kps.shape == (1, 17, 3)
    np.testing.assert_allclose(kps[0, 5], [25, 35, 0.8], rtol=1e-6)


def test_decode_rejects_other_layouts() -> None:
    with pytest.raises(ValueError, match=r"\[56, anchors\]"):
        yolo_pose.decode(np.zeros((ANCHORS, 56)))


def test_nms_keeps_separate_people() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [30, 30, 40, 40]], float)
    kept, scores, _ = yolo_pose.nms(boxes, np.array([0.5, 0.9, 0.8]), np.zeros((3, 17, 3)))
    np.testing.assert_allclose(scores, [0.9, 0.8])
    np.testing.assert_allclose(kept, boxes[[1, 2]])


def test_predict_maps_the_box_back_through_the_letterbox(tmp_path: Path) -> None:
    model = make(tmp_path)
    model.check_io()
    image = np.zeros((64, 128, 3), np.uint8)  # scale 0.5, 16 px of padding above and below
    (dets,) = model.predict([image])
    assert len(dets) == 1
    det = dets[0]
    assert det.label == "person" and det.score == pytest.approx(0.9)
    np.testing.assert_allclose(det.box, [48, 24, 80, 64])  # ((24,28,40,52) - (0,16)) / 0.5
    assert [k.name for k in det.keypoints] == list(yolo_pose.KEYPOINT_NAMES)
    assert det.keypoints[0].name == "nose" and det.keypoints[-1].name == "right_ankle"
    nose = det.keypoints[0]
    assert (nose.x, nose.y, nose.score) == pytest.approx((40.0, 28.0, 0.8))
    assert det.body_box is None


def test_one_call_for_a_batch(tmp_path: Path) -> None:
    model = make(tmp_path)
    images = [np.zeros((64, 128, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)] * 2
    results = model.predict(images)
    assert model.ort_calls == 1
    assert [len(r) for r in results] == [1, 1, 1, 1]
    np.testing.assert_allclose(results[1][0].box, [24, 28, 40, 52])  # no letterbox at 64x64


def test_check_io_refuses_a_model_of_another_size(tmp_path: Path) -> None:
    model = make(tmp_path, input=InputSpec(width=96, height=96, layout="NCHW"))
    with pytest.raises(ModelValidationError, match=r"input has shape \['B', 3, 64, 64\]"):
        model.check_io()


def test_check_io_refuses_a_fixed_batch(tmp_path: Path) -> None:
    model = make(tmp_path, model={"batch": 1})
    with pytest.raises(ModelValidationError, match="must be dynamic"):
        model.check_io()


def test_check_io_refuses_the_wrong_decoder(tmp_path: Path) -> None:
    model = make(tmp_path, postprocess={"decoder": "blazepose"})
    with pytest.raises(ModelValidationError) as err:
        model.check_io()
    text = str(err.value)
    assert "needs input layout NHWC" in text and "inputs ['images'] != ['input']" in text


def test_runtime_failure_is_a_model_failure(tmp_path: Path) -> None:
    model = make(tmp_path, input=InputSpec(width=96, height=96, layout="NCHW"))
    with pytest.raises(ModelFailure, match="failed on a batch of 1 crops"):
        model.predict([np.zeros((96, 96, 3), np.uint8)])
    assert model.ort_calls == 1
