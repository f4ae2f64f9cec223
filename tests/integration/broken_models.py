"""Deliberately broken detector versions, made from the real one by editing its ONNX graph, and
one honest rebuild (the same weights registered again) for rollouts that are meant to promote.

Each works on either decoder: BlazePose (``boxes [N,2254,12]`` + score logits ``scores``) and
YOLO-pose (``output0 [N,56,A]``: cx, cy, w, h, score probability, 17 x (x, y, confidence)).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from model_registry.manifest import Manifest


def _copy(src: Path, dest: Path) -> tuple[Manifest, Path]:
    shutil.copytree(src, dest)
    manifest = Manifest.load(dest)
    return manifest, manifest.artifact_path(dest, "model")


def _add_to_output(src: Path, dest: Path, output: str, constant: np.ndarray, text: str) -> Path:
    """Copy of ``src`` whose ONNX output ``output`` has ``constant`` added to it."""
    manifest, onnx_path = _copy(src, dest)
    model = onnx.load(onnx_path)
    graph = model.graph
    for node in graph.node:
        node.output[:] = [f"{output}_true" if x == output else x for x in node.output]
    graph.initializer.append(numpy_helper.from_array(constant, f"{output}_offset"))
    graph.node.append(helper.make_node("Add", [f"{output}_true", f"{output}_offset"], [output]))
    onnx.save(model, onnx_path)
    _describe(dest, manifest, text)
    return dest


def _yolo(src: Path) -> bool:
    return Manifest.load(src).postprocess.get("decoder") == "yolo_pose"


def shifted_boxes(src: Path, dest: Path, shift_px: float = 70.0) -> Path:
    """Runs fine, answers fast, but every box and keypoint is moved by ``shift_px`` (of 224,
    or the same share of a YOLO input)."""
    if _yolo(src):
        shift = shift_px * Manifest.load(src).input.width / 224
        rows = np.zeros((56, 1), np.float32)
        rows[0:2] = shift  # box centre
        rows[5::3] = rows[6::3] = shift  # keypoint x, y
        return _add_to_output(src, dest, "output0", rows, "broken on purpose: boxes shifted")
    offset = np.zeros(12, np.float32)
    offset[0::2] = shift_px  # x of the box centre and of every keypoint
    offset[1::2] = shift_px
    offset[2:4] = 0.0  # leave width/height alone
    return _add_to_output(src, dest, "boxes", offset, "broken on purpose: boxes shifted by 70 px")


def rebuilt(src: Path, dest: Path) -> Path:
    """The same weights registered again, as a rebuild of the champion would be: a good
    challenger whose promotion leaves the champion's family (and keypoint layout) as it was, so
    a rollout test that promotes does not change what the other tests run against."""
    manifest, _ = _copy(src, dest)
    data = manifest.model_dump()
    data["description"] = f"{manifest.description} (rebuilt for a rollout test)"
    data["source"] = {**manifest.source, "derived_from": "test", "rebuilt": "same weights"}
    Manifest.model_validate(data).dump(dest)
    return dest


def dimmed_scores(src: Path, dest: Path, logit_offset: float = -2.0) -> Path:
    """Same boxes, but every score logit lowered: confidences fall and weak people vanish."""
    if _yolo(src):  # YOLO's score is a probability: 0.35 * logit_offset off it (0.9 -> 0.2)
        rows = np.zeros((56, 1), np.float32)
        rows[4] = 0.35 * logit_offset
        return _add_to_output(
            src, dest, "output0", rows, f"drifts on purpose: scores {0.35 * logit_offset:+}"
        )
    return _add_to_output(
        src,
        dest,
        "scores",
        np.array(logit_offset, np.float32),
        f"drifts on purpose: score logits {logit_offset:+}",
    )


def raising(src: Path, dest: Path) -> Path:
    """Loads and has the right I/O names, but every inference raises inside ONNX Runtime."""
    manifest, onnx_path = _copy(src, dest)
    n = helper.make_tensor_value_info
    if manifest.postprocess.get("decoder") == "yolo_pose":
        size = manifest.input.width
        shape = numpy_helper.from_array(np.array([-1, 56, 8401], np.int64), "oshape")
        graph = helper.make_graph(
            [helper.make_node("Reshape", ["images", "oshape"], ["output0"])],
            "raising",
            [n("images", onnx.TensorProto.FLOAT, ["N", 3, size, size])],
            [n("output0", onnx.TensorProto.FLOAT, ["N", 56, 8400])],
            [shape],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.save(model, onnx_path)
        _describe(dest, manifest, "broken on purpose: raises on every inference")
        return dest
    # 224*224*3 values cannot be reshaped into [-1, 2254, 12]: ORT fails at run time.
    boxes_shape = numpy_helper.from_array(np.array([-1, 2254, 12], np.int64), "bshape")
    scores_shape = numpy_helper.from_array(np.array([-1, 2254, 1], np.int64), "sshape")
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["input", "bshape"], ["boxes"]),
            helper.make_node("Reshape", ["input", "sshape"], ["scores"]),
        ],
        "raising",
        [n("input", onnx.TensorProto.FLOAT, ["N", 224, 224, 3])],
        [
            n("boxes", onnx.TensorProto.FLOAT, ["N", 2254, 12]),
            n("scores", onnx.TensorProto.FLOAT, ["N", 2254, 1]),
        ],
        [boxes_shape, scores_shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, onnx_path)
    _describe(dest, manifest, "broken on purpose: raises on every inference")
    return dest


def _describe(dest: Path, manifest: Manifest, text: str) -> None:
    data = manifest.model_dump()
    data["description"] = text
    data["source"] = {**manifest.source, "derived_from": "test", "broken": text}
    Manifest.model_validate(data).dump(dest)
