"""The TFLite -> ONNX converter on the real BlazePose detector from the mediapipe wheel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from model_registry.references.detector import MEMBER, PACKAGE, VERSION
from model_registry.references.tflite import _Converter, convert_tflite
from model_registry.wheels import extract_member, fetch_wheel


@pytest.fixture(scope="module")
def tflite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("tflite") / "pose_detection.tflite"
    return extract_member(fetch_wheel(PACKAGE, VERSION), MEMBER, dest)


@pytest.fixture(scope="module")
def converted(tflite_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "a.onnx"
    return convert_tflite(tflite_path, out, output_names=["boxes", "scores"])


def densify_reference(conv: _Converter, idx: int) -> np.ndarray:
    """TFLite's FormatConverter, element by element (slow, obviously right)."""
    t = conv.g.Tensors(idx)
    sp, values, shape = t.Sparsity(), conv.const(idx), conv.shape(idx)
    order = list(sp.TraversalOrderAsNumpy())
    dense = np.zeros(shape, values.dtype)

    def visit(level: int, prev: int, coords: list[int]) -> None:
        if level == len(order):
            dense[tuple(coords[order.index(d)] for d in range(len(shape)))] = values[prev]
            return
        dm = sp.DimMetadata(level)
        if dm.Format() == 0:
            for i in range(dm.DenseSize()):
                visit(level + 1, prev * dm.DenseSize() + i, [*coords, i])
        else:
            segs = conv._index_vector(dm.ArraySegmentsType(), dm.ArraySegments())
            idxs = conv._index_vector(dm.ArrayIndicesType(), dm.ArrayIndices())
            for k in range(segs[prev], segs[prev + 1]):
                visit(level + 1, k, [*coords, int(idxs[k])])

    visit(0, 0, [])
    return dense


def test_graph_edges_are_nhwc_with_a_dynamic_batch(converted: Path) -> None:
    model = onnx.load(converted)
    assert model.opset_import[0].version == 13

    def dims(vi):
        return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]

    assert [(i.name, dims(i)) for i in model.graph.input] == [("input", ["N", 224, 224, 3])]
    assert [(o.name, dims(o)) for o in model.graph.output] == [
        ("boxes", ["N", 2254, 12]),
        ("scores", ["N", 2254, 1]),
    ]
    assert {i.data_type for i in model.graph.initializer} <= {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.INT64,
    }
    ops = {n.op_type for n in model.graph.node}
    assert {"Conv", "Add", "Pad", "Reshape", "Concat", "DepthToSpace", "Resize"} <= ops


def test_conversion_is_byte_for_byte_deterministic(tflite_path: Path, converted: Path, tmp_path):
    again = convert_tflite(tflite_path, tmp_path / "b.onnx", output_names=["boxes", "scores"])
    assert again.read_bytes() == converted.read_bytes()


def test_vectorised_densify_matches_the_reference(tflite_path: Path) -> None:
    import tflite

    conv = _Converter(tflite, tflite_path.read_bytes())
    sparse = [i for i in range(conv.g.TensorsLength()) if conv.g.Tensors(i).Sparsity()]
    assert len(sparse) == 38
    for idx in sparse[:6]:  # the reference is slow; six tensors cover both index widths
        fast = conv.densify(idx)
        np.testing.assert_array_equal(fast, densify_reference(conv, idx))
        assert np.count_nonzero(fast) == conv.const(idx).size - np.sum(conv.const(idx) == 0)


def test_batch_rows_are_independent(converted: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(converted), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (3, 224, 224, 3)).astype(np.float32)
    boxes, scores = session.run(["boxes", "scores"], {"input": x})
    one_boxes, one_scores = session.run(["boxes", "scores"], {"input": x[1:2]})
    assert boxes.shape == (3, 2254, 12) and scores.shape == (3, 2254, 1)
    np.testing.assert_allclose(boxes[1], one_boxes[0], atol=1e-3)
    np.testing.assert_allclose(scores[1], one_scores[0], atol=1e-3)
