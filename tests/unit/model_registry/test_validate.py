"""Pre-registration checks with a tiny, really loadable YOLO-pose-shaped ONNX detector."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from drift.features import FEATURES_VERSION
from model_registry import validate
from model_registry.mlflow_store import MlflowModelStore
from model_registry.validate import CHECKS, register_checked, validate_model_dir
from serving.errors import BadRequest, ModelValidationError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def tiny_yolo_pose(path: Path, *, size: int = 64, rows: int = 56) -> Path:
    """``images [B,3,size,size]`` -> Conv(8x8, stride 8) -> ``output0 [B,rows,(size/8)^2]``."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.normal(0, 0.05, (rows, 3, 8, 8)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["images", "w"], ["feat"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Sigmoid", ["feat"], ["prob"]),
        helper.make_node("Mul", ["prob", "scale"], ["scaled"]),
        helper.make_node("Reshape", ["scaled", "shape"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_yolo_pose",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", rows, "anchors"])],
        initializer=[
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.array(size, np.float32), "scale"),
            numpy_helper.from_array(np.array([0, rows, -1], np.int64), "shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def write_detector_dir(path: Path, **onnx_kw: Any) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    tiny_yolo_pose(path / "model.onnx", **onnx_kw)
    manifest = {
        "name": "detector",
        "task": "detection",
        "artifacts": {"model": "model.onnx"},
        "input": {"width": 64, "height": 64, "layout": "NCHW"},
        "labels": ["person"],
        "postprocess": {"decoder": "yolo_pose", "score_threshold": 0.25, "iou_threshold": 0.45},
        "source": {"script": "tests/unit/model_registry/test_validate.py"},
    }
    (path / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    return path


def _edit_manifest(model_dir: Path, **changes: Any) -> None:
    raw = yaml.safe_load((model_dir / "manifest.yaml").read_text())
    raw.update(changes)
    (model_dir / "manifest.yaml").write_text(yaml.safe_dump(raw))


def _failed_check(model_dir: Path) -> ModelValidationError:
    with pytest.raises(ModelValidationError) as exc:
        validate_model_dir(model_dir)
    return exc.value


def test_valid_detector_passes_every_check(tmp_path: Path) -> None:
    report = validate_model_dir(write_detector_dir(tmp_path / "det"))
    assert report.checks == CHECKS
    assert report.manifest.name == "detector"
    assert report.runtime["provider"] == "CPUExecutionProvider"
    assert report.output_type == "list"  # one list of detections for the one image
    assert report.to_dict()["checks"] == list(CHECKS)


def test_broken_manifest_fails_the_manifest_check(tmp_path: Path) -> None:
    model_dir = write_detector_dir(tmp_path / "det")
    (model_dir / "manifest.yaml").write_text("name: detector\ntask: [unclosed\n")
    err = _failed_check(model_dir)
    assert err.details["check"] == "manifest" and "not valid YAML" in err.message

    _edit_manifest(write_detector_dir(tmp_path / "det2"), task="segmentation")
    err = _failed_check(tmp_path / "det2")
    assert err.details["check"] == "manifest" and "'segmentation'" in err.message


def test_missing_directory_fails_the_manifest_check(tmp_path: Path) -> None:
    assert _failed_check(tmp_path / "nowhere").details["check"] == "manifest"


def test_missing_artifact_fails_the_artifacts_check(tmp_path: Path) -> None:
    model_dir = write_detector_dir(tmp_path / "det")
    (model_dir / "model.onnx").unlink()
    err = _failed_check(model_dir)
    assert err.details["check"] == "artifacts"
    assert "'model'" in err.message and "'model.onnx'" in err.message


def test_unloadable_onnx_fails_the_load_check(tmp_path: Path) -> None:
    model_dir = write_detector_dir(tmp_path / "det")
    (model_dir / "model.onnx").write_bytes(b"not a protobuf")
    assert _failed_check(model_dir).details["check"] == "load"


def test_unknown_postprocess_key_fails_the_load_check(tmp_path: Path) -> None:
    model_dir = write_detector_dir(tmp_path / "det")
    _edit_manifest(model_dir, postprocess={"decoder": "yolo_pose", "nms_iou": 0.45})
    err = _failed_check(model_dir)
    assert err.details["check"] == "load" and "nms_iou" in err.message


def test_input_size_mismatch_fails_the_io_check(tmp_path: Path) -> None:
    model_dir = write_detector_dir(tmp_path / "det", size=32)  # manifest still says 64x64
    err = _failed_check(model_dir)
    assert err.details["check"] == "io"
    assert "input has shape" in err.message


def test_output_rows_mismatch_fails_the_io_check(tmp_path: Path) -> None:
    model_dir = write_detector_dir(tmp_path / "det", rows=50)
    err = _failed_check(model_dir)
    assert err.details["check"] == "io" and "output0" in err.message


def test_wrong_number_of_outputs_fails_the_predict_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class TwoOutputs:
        runtime = None

        def check_io(self) -> None:
            pass

        def example_input(self) -> int:
            return 0

        def predict(self, inputs: list[Any]) -> list[Any]:
            return [[], []]

    monkeypatch.setattr(validate, "load_model", lambda *a, **k: TwoOutputs())
    err = _failed_check(write_detector_dir(tmp_path / "det"))
    assert err.details["check"] == "predict" and "2 outputs" in err.message


def test_failed_check_registers_nothing(store: MlflowModelStore, tmp_path: Path) -> None:
    model_dir = write_detector_dir(tmp_path / "det", size=32)
    with pytest.raises(ModelValidationError, match="'io'"):
        register_checked(store, model_dir, description="bad")
    (tmp_path / "det2").mkdir()
    with pytest.raises(ModelValidationError, match="'manifest'"):
        register_checked(store, tmp_path / "det2")
    assert store.is_empty()
    assert store.list_models() == {}


def test_valid_model_registers_and_resolves(store: MlflowModelStore, tmp_path: Path) -> None:
    info = register_checked(
        store, write_detector_dir(tmp_path / "det"), description="tiny", tags={"who": "ci"}
    )
    assert (info.name, info.version, info.task, info.description) == (
        "detector",
        1,
        "detection",
        "tiny",
    )
    resolved = store.resolve(info.ref)
    report = validate_model_dir(resolved.path)  # the downloaded copy is just as loadable
    assert report.checks == CHECKS


def test_registration_freezes_the_evaluation_reference_in_mlflow(
    store: MlflowModelStore, tmp_path: Path
) -> None:
    from drift.reference import DEFAULT_ROWS

    info = register_checked(store, write_detector_dir(tmp_path / "det"))
    got = store.reference(info.name, info.version)
    assert got is not None
    record, frame = got
    assert record["source"] == "evaluation" and record["rows"] == DEFAULT_ROWS["detection"]
    assert record["features"] == FEATURES_VERSION
    assert len(frame) == DEFAULT_ROWS["detection"]
    assert {"brightness", "sharpness", "pred_count", "pred_box_area_share"} <= set(frame.columns)
    # Frozen: a second reference is refused unless replacing is asked for explicitly.
    with pytest.raises(BadRequest, match="already has a frozen drift reference"):
        store.log_reference(info.name, info.version, frame.head(3), source="captured")
    again = store.log_reference(
        info.name, info.version, frame.head(3), source="captured", replace=True
    )
    assert again["n"] == 2 and again["rows"] == 3
    assert len(store.reference(info.name, info.version)[1]) == 3  # type: ignore[index]
    # The reference tag is the platform's own record: users cannot overwrite it.
    with pytest.raises(BadRequest, match="reserved"):
        store.set_tag(info.name, info.version, "canaryserve.drift.reference", "{}")


def test_bootstrap_refreezes_a_reference_model_reference_from_older_features(
    store: MlflowModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model_registry.references import bootstrap

    model_dir = write_detector_dir(tmp_path / "det")
    info = store.register(model_dir)
    store.log_reference(info.name, info.version, _tiny_frame(), source="evaluation", features=1)
    monkeypatch.setattr(bootstrap, "built_model_dir", lambda ref: model_dir)
    ref = bootstrap.Reference("detector", 1, "detector-v1", "tiny", lambda p: p)
    bootstrap._ensure_reference(store, ref)
    record, frame = store.reference(info.name, info.version)  # type: ignore[misc]
    assert (record["n"], record["features"]) == (2, FEATURES_VERSION)
    assert len(frame) > len(_tiny_frame())
    bootstrap._ensure_reference(store, ref)  # current: left alone
    assert store.reference(info.name, info.version)[0]["n"] == 2  # type: ignore[index]


def _tiny_frame() -> Any:
    import pandas as pd

    return pd.DataFrame({"brightness": [1.0, 2.0], "pred_count": [0.0, 1.0]})
