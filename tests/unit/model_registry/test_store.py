"""ModelRef parsing, version records and the file-hash checks shared by every store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from model_registry.store import (
    CHALLENGER,
    CHAMPION,
    InvalidModelRef,
    ModelRef,
    ModelVersionInfo,
    hash_dir,
    verify_dir,
)
from model_registry.wheels import sha256_file
from serving.errors import ArtifactIntegrityError, BadRequest


def test_alias_constants() -> None:
    assert (CHAMPION, CHALLENGER) == ("champion", "challenger")


@pytest.mark.parametrize(
    ("text", "name", "version", "alias"),
    [
        ("detector@champion", "detector", None, "champion"),
        ("detector/3", "detector", 3, None),
        ("ocr-det_2@challenger", "ocr-det_2", None, "challenger"),
        ("action/12", "action", 12, None),
    ],
)
def test_parse_round_trips(text: str, name: str, version: int | None, alias: str | None) -> None:
    ref = ModelRef.parse(text)
    assert (ref.name, ref.version, ref.alias) == (name, version, alias)
    assert str(ref) == text
    assert ModelRef.parse(str(ref)) == ref
    assert ref.is_alias == (alias is not None)


def test_parse_accepts_a_ref_and_surrounding_space() -> None:
    ref = ModelRef.by_alias("detector", CHAMPION)
    assert ModelRef.parse(ref) is ref
    assert ModelRef.parse("  detector/2 ") == ModelRef.pinned("detector", 2)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "detector",
        "detector@",
        "@champion",
        "detector/",
        "detector/0",
        "detector/03",
        "detector/-1",
        "detector/abc",
        "detector/1.5",
        "Detector@champion",
        "detector@Champion",
        "detector@latest",
        "detector@v2",
        "detector@a@b",
        "detector/1@champion",
        "a/b/c",
        "models:/detector@champion",
    ],
)
def test_parse_refuses_bad_values_quoting_them(text: str) -> None:
    with pytest.raises(InvalidModelRef) as exc:
        ModelRef.parse(text)
    assert repr(text) in str(exc.value) or repr(text.strip()) in str(exc.value)


def test_bad_ref_is_a_400_and_a_value_error() -> None:
    with pytest.raises(InvalidModelRef) as exc:
        ModelRef.parse("nope")
    assert isinstance(exc.value, BadRequest) and isinstance(exc.value, ValueError)
    assert exc.value.status_code == 400
    assert exc.value.code == "invalid_model_ref"


@pytest.mark.parametrize("value", [None, 3, b"detector/1"])
def test_parse_refuses_non_strings(value: object) -> None:
    with pytest.raises(InvalidModelRef, match=repr(value).replace("[", r"\[")):
        ModelRef.parse(value)  # type: ignore[arg-type]


def test_constructor_needs_exactly_one_of_version_and_alias() -> None:
    with pytest.raises(InvalidModelRef, match=r"exactly one"):
        ModelRef("detector")
    with pytest.raises(InvalidModelRef, match=r"exactly one"):
        ModelRef("detector", version=1, alias=CHAMPION)
    with pytest.raises(InvalidModelRef, match=r">= 1"):
        ModelRef("detector", version=0)
    with pytest.raises(InvalidModelRef, match=r">= 1"):
        ModelRef("detector", version=True)


def test_refs_are_hashable_values() -> None:
    assert {ModelRef.parse("a/1"), ModelRef("a", version=1)} == {ModelRef("a", version=1)}


class _Config(BaseModel):
    model: ModelRef


def test_pydantic_field_parses_and_serialises_as_string() -> None:
    cfg = _Config.model_validate({"model": "detector@champion"})
    assert cfg.model == ModelRef("detector", alias="champion")
    assert cfg.model_dump() == {"model": "detector@champion"}
    assert _Config.model_validate_json('{"model": "detector/4"}').model.version == 4


def test_pydantic_field_reports_the_bad_ref() -> None:
    with pytest.raises(ValidationError, match=r"'detector@'"):
        _Config.model_validate({"model": "detector@"})


def test_version_info_to_dict() -> None:
    info = ModelVersionInfo(
        name="detector",
        version=2,
        created_at=datetime(2025, 1, 2, tzinfo=UTC),
        source_uri="file:///x/model",
        aliases=("champion",),
        task="detection",
        lineage={"package": "ultralytics"},
        metrics={"map50": 0.5},
    )
    d = info.to_dict()
    assert d["ref"] == "detector/2" and info.ref == ModelRef("detector", version=2)
    assert d["aliases"] == ["champion"]
    assert d["created_at"] == "2025-01-02T00:00:00+00:00"
    assert d["lineage"] == {"package": "ultralytics"} and d["metrics"] == {"map50": 0.5}


# --- hashes --------------------------------------------------------------------------------


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "m"
    (d / "sub").mkdir(parents=True)
    (d / "model.onnx").write_bytes(b"\x00onnx")
    (d / "sub" / "labels.txt").write_text("person\n")
    return d


def test_hash_dir_uses_posix_relative_paths(model_dir: Path) -> None:
    hashes = hash_dir(model_dir)
    assert sorted(hashes) == ["model.onnx", "sub/labels.txt"]
    assert hashes["model.onnx"] == sha256_file(model_dir / "model.onnx")


def test_verify_dir_accepts_identical_files(model_dir: Path) -> None:
    verify_dir(model_dir, hash_dir(model_dir), what="m/1")


def test_verify_dir_names_the_changed_file_and_both_hashes(model_dir: Path) -> None:
    expected = hash_dir(model_dir)
    (model_dir / "sub" / "labels.txt").write_text("car\n")
    actual = sha256_file(model_dir / "sub" / "labels.txt")
    with pytest.raises(ArtifactIntegrityError) as exc:
        verify_dir(model_dir, expected, what="m/1")
    msg = str(exc.value)
    assert "'sub/labels.txt'" in msg and expected["sub/labels.txt"] in msg and actual in msg
    assert exc.value.details["file"] == "sub/labels.txt"


def test_verify_dir_reports_a_missing_file(model_dir: Path) -> None:
    expected = hash_dir(model_dir)
    (model_dir / "model.onnx").unlink()
    with pytest.raises(ArtifactIntegrityError, match=r"'model.onnx' is missing"):
        verify_dir(model_dir, expected, what="m/1")


def test_verify_dir_reports_an_extra_file(model_dir: Path) -> None:
    expected = hash_dir(model_dir)
    (model_dir / "evil.py").write_text("import os")
    with pytest.raises(ArtifactIntegrityError, match=r"unexpected file 'evil.py'"):
        verify_dir(model_dir, expected, what="m/1")


def test_verify_dir_refuses_a_version_without_hashes(model_dir: Path) -> None:
    with pytest.raises(ArtifactIntegrityError, match=r"no recorded file hashes"):
        verify_dir(model_dir, {}, what="m/1")
