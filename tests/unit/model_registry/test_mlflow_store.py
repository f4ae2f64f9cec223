"""MlflowModelStore against a real SQLite MLflow store in a temp data dir (no server, no Ray)."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from model_registry import settings
from model_registry.mlflow_layout import TAG_FILES
from model_registry.mlflow_store import MlflowModelStore
from model_registry.store import CHALLENGER, CHAMPION, ModelRef, hash_dir
from model_registry.wheels import sha256_file
from serving.errors import (
    ArtifactIntegrityError,
    BadRequest,
    ManifestError,
    RegistryError,
    UnknownModel,
    UnknownModelVersion,
)


def write_model_dir(path: Path, name: str = "toy", payload: bytes = b"weights-v1") -> Path:
    """A small model dir: manifest + a fake weights file + a nested labels file."""
    (path / "extra").mkdir(parents=True, exist_ok=True)
    (path / "model.onnx").write_bytes(payload)
    (path / "extra" / "labels.txt").write_text("person\n")
    manifest = {
        "name": name,
        "task": "detection",
        "artifacts": {"model": "model.onnx", "labels": "extra/labels.txt"},
        "input": {"width": 64, "height": 64, "layout": "NCHW"},
        "labels": ["person"],
        "postprocess": {"decoder": "yolo_pose", "score_threshold": 0.25},
        "source": {"package": "toypkg==1.0", "git_commit": "abc123"},
        "metrics": {"mAP50": 0.61, "latency@cpu_ms": 12.5},
    }
    (path / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    return path


@pytest.fixture
def two_versions(store: MlflowModelStore, tmp_path: Path) -> Iterator[MlflowModelStore]:
    store.register(write_model_dir(tmp_path / "v1", payload=b"weights-v1"), tags={"who": "ci"})
    store.register(write_model_dir(tmp_path / "v2", payload=b"weights-v2"), description="second")
    yield store


def test_embedded_store_keeps_everything_in_the_data_dir(
    store: MlflowModelStore, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    assert store.tracking_uri == f"sqlite:///{data / 'mlflow.db'}"
    assert store.is_empty()
    info = store.register(write_model_dir(tmp_path / "v1"))
    assert info.source_uri.startswith((data / "mlartifacts").as_uri())
    assert info.source_uri.endswith("/model")
    assert not store.is_empty()


def test_register_numbers_versions_and_records_lineage(
    two_versions: MlflowModelStore, tmp_path: Path
) -> None:
    v1 = two_versions.get("toy/1")
    v2 = two_versions.get(ModelRef("toy", version=2))
    assert (v1.version, v2.version) == (1, 2)
    assert v1.task == "detection" and v1.status == "READY"
    assert v1.lineage == {"package": "toypkg==1.0", "git_commit": "abc123"}
    # '@' is not allowed in MLflow keys; it is replaced, the value kept.
    assert v1.metrics == {"mAP50": 0.61, "latency_cpu_ms": 12.5}
    assert v1.tags["who"] == "ci" and "who" not in v2.tags
    assert v1.tags["canaryserve.source.git_commit"] == "abc123"
    assert v2.description == "second"
    assert v1.files == hash_dir(tmp_path / "v1")
    assert v1.files["model.onnx"] != v2.files["model.onnx"]
    assert TAG_FILES not in v1.tags  # exposed as .files, not repeated in tags
    assert v1.run_id and v1.run_id != v2.run_id


def test_register_logs_a_run_with_params_metrics_and_artifacts(
    two_versions: MlflowModelStore,
) -> None:
    from mlflow import MlflowClient

    info = two_versions.get("toy/1")
    run = MlflowClient(two_versions.tracking_uri).get_run(info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["task"] == "detection"
    assert run.data.params["input_width"] == "64"
    assert run.data.params["postprocess.decoder"] == "yolo_pose"
    assert run.data.metrics["mAP50"] == pytest.approx(0.61)
    artifacts = {
        a.path for a in MlflowClient(two_versions.tracking_uri).list_artifacts(info.run_id, "model")
    }
    assert artifacts == {"model/model.onnx", "model/manifest.yaml", "model/extra"}


def test_list_models(two_versions: MlflowModelStore, tmp_path: Path) -> None:
    two_versions.register(write_model_dir(tmp_path / "other", name="other"))
    two_versions.set_alias("toy", CHAMPION, 2)
    models = two_versions.list_models()
    assert list(models) == ["other", "toy"]
    assert [v.version for v in models["toy"]] == [1, 2]
    assert models["toy"][1].aliases == (CHAMPION,) and models["toy"][0].aliases == ()


def test_list_models_ignores_models_not_registered_by_canaryserve(
    two_versions: MlflowModelStore,
) -> None:
    from mlflow import MlflowClient

    MlflowClient(two_versions.tracking_uri).create_registered_model("someone-elses")
    assert list(two_versions.list_models()) == ["toy"]


def test_aliases_set_move_and_delete(two_versions: MlflowModelStore) -> None:
    store = two_versions
    assert store.aliases("toy") == {}
    store.set_alias("toy", CHAMPION, 1)
    store.set_alias("toy", CHALLENGER, 2)
    assert store.aliases("toy") == {CHAMPION: 1, CHALLENGER: 2}
    assert store.get("toy@champion").version == 1
    assert store.get("toy/1").aliases == (CHAMPION,)

    store.set_alias("toy", CHAMPION, 2)  # promote: the alias moves
    assert store.aliases("toy") == {CHAMPION: 2, CHALLENGER: 2}
    assert store.get("toy/2").aliases == (CHALLENGER, CHAMPION)

    store.delete_alias("toy", CHALLENGER)
    store.delete_alias("toy", CHALLENGER)  # idempotent
    assert store.aliases("toy") == {CHAMPION: 2}
    with pytest.raises(UnknownModelVersion, match=r"no alias 'challenger'"):
        store.get("toy@challenger")


def test_set_alias_refuses_unknown_versions_and_bad_aliases(
    two_versions: MlflowModelStore,
) -> None:
    with pytest.raises(UnknownModelVersion, match=r"versions: \[1, 2\]"):
        two_versions.set_alias("toy", CHAMPION, 9)
    with pytest.raises(UnknownModel):
        two_versions.set_alias("nope", CHAMPION, 1)
    with pytest.raises(BadRequest, match=r"'latest'"):
        two_versions.set_alias("toy", "latest", 1)
    assert two_versions.aliases("toy") == {}


def test_resolve_by_alias_and_by_version_gives_a_verified_copy(
    two_versions: MlflowModelStore, tmp_path: Path
) -> None:
    store = two_versions
    store.set_alias("toy", CHAMPION, 2)
    resolved = store.resolve("toy@champion")
    assert resolved.path == tmp_path / "data" / "models" / "toy" / "2"
    assert resolved.info.version == 2 and resolved.requested == ModelRef.parse("toy@champion")
    assert resolved.manifest.name == "toy"
    assert hash_dir(resolved.path) == hash_dir(tmp_path / "v2")

    pinned = store.resolve("toy/1")
    assert pinned.path.name == "1"
    assert (pinned.path / "model.onnx").read_bytes() == b"weights-v1"
    # No temp dirs left behind next to the copies.
    assert sorted(p.name for p in pinned.path.parent.iterdir()) == ["1", "2"]


def test_resolve_reuses_a_copy_that_verifies(two_versions: MlflowModelStore) -> None:
    first = two_versions.resolve("toy/1")
    marker = (first.path / "model.onnx").stat().st_mtime_ns
    again = two_versions.resolve("toy/1")
    assert again.path == first.path
    assert (again.path / "model.onnx").stat().st_mtime_ns == marker


def test_resolve_replaces_a_local_copy_that_was_tampered_with(
    two_versions: MlflowModelStore,
) -> None:
    path = two_versions.resolve("toy/1").path
    (path / "model.onnx").write_bytes(b"tampered")
    (path / "dropped.txt").write_text("x")
    again = two_versions.resolve("toy/1")
    assert (again.path / "model.onnx").read_bytes() == b"weights-v1"
    assert not (again.path / "dropped.txt").exists()


def _stored_file(store: MlflowModelStore, ref: str, rel: str) -> Path:
    from urllib.parse import urlparse

    return Path(urlparse(store.get(ref).source_uri).path) / rel


def test_resolve_refuses_a_stored_artifact_that_was_tampered_with(
    two_versions: MlflowModelStore, tmp_path: Path
) -> None:
    stored = _stored_file(two_versions, "toy/2", "model.onnx")
    expected = sha256_file(stored)
    stored.write_bytes(b"evil weights")
    with pytest.raises(ArtifactIntegrityError) as exc:
        two_versions.resolve("toy/2")
    msg = str(exc.value)
    assert "'model.onnx'" in msg and expected in msg and sha256_file(stored) in msg
    # Nothing half-verified is left where the serving side would look.
    assert not (tmp_path / "data" / "models" / "toy" / "2").exists()
    assert list((tmp_path / "data" / "models" / "toy").iterdir()) == []


def test_resolve_refuses_missing_and_extra_stored_files(two_versions: MlflowModelStore) -> None:
    _stored_file(two_versions, "toy/1", "extra/labels.txt").unlink()
    with pytest.raises(ArtifactIntegrityError, match=r"'extra/labels.txt' is missing"):
        two_versions.resolve("toy/1")
    _stored_file(two_versions, "toy/2", "backdoor.py").write_text("import os")
    with pytest.raises(ArtifactIntegrityError, match=r"unexpected file 'backdoor.py'"):
        two_versions.resolve("toy/2")


def test_unknown_refs_say_what_exists(two_versions: MlflowModelStore) -> None:
    two_versions.set_alias("toy", CHAMPION, 1)
    with pytest.raises(UnknownModel, match=r"no model 'nope' in the registry; models: \['toy'\]"):
        two_versions.get("nope@champion")
    with pytest.raises(UnknownModel):
        two_versions.resolve("nope/1")
    with pytest.raises(UnknownModel):
        two_versions.aliases("nope")
    with pytest.raises(UnknownModelVersion) as exc:
        two_versions.get("toy/7")
    assert "'toy/7'" in str(exc.value) and "versions: [1, 2]" in str(exc.value)
    assert "{'champion': 1}" in str(exc.value)
    with pytest.raises(UnknownModelVersion, match=r"'toy@challenger'"):
        two_versions.resolve("toy@challenger")


def test_set_tag(two_versions: MlflowModelStore) -> None:
    two_versions.set_tag("toy", 2, "canaryserve.rollout", "promoted")
    assert two_versions.get("toy/2").tags["canaryserve.rollout"] == "promoted"
    with pytest.raises(BadRequest, match=r"reserved"):
        two_versions.set_tag("toy", 2, TAG_FILES, "{}")
    with pytest.raises(UnknownModelVersion):
        two_versions.set_tag("toy", 5, "k", "v")


def test_register_refuses_reserved_tags_and_missing_artifacts(
    store: MlflowModelStore, tmp_path: Path
) -> None:
    model_dir = write_model_dir(tmp_path / "v1")
    with pytest.raises(BadRequest, match=r"canaryserve.task"):
        store.register(model_dir, tags={"canaryserve.task": "ocr"})
    (model_dir / "extra" / "labels.txt").unlink()
    with pytest.raises(ManifestError, match=r"'extra/labels.txt'"):
        store.register(model_dir)
    with pytest.raises(ManifestError, match=r"no manifest.yaml"):
        store.register(tmp_path)
    assert store.is_empty()


def test_a_broken_database_is_a_registry_error(tmp_path: Path) -> None:
    db = tmp_path / "broken.db"
    db.write_bytes(b"this is not sqlite" * 100)
    store = MlflowModelStore(tracking_uri=f"sqlite:///{db}")
    with pytest.raises(RegistryError, match=r"model registry at sqlite"):
        store.get("toy/1")


def test_sqlite_outside_the_data_dir_keeps_artifacts_next_to_the_db(
    tmp_path: Path, migrated_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.ENV_DATA_DIR, str(tmp_path / "data"))
    db = tmp_path / "elsewhere" / "reg.db"
    db.parent.mkdir()
    shutil.copy(migrated_db, db)
    store = MlflowModelStore(tracking_uri=f"sqlite:///{db}")
    info = store.register(write_model_dir(tmp_path / "v1"))
    assert info.source_uri.startswith((db.parent / "mlartifacts").as_uri())
    assert sqlite3.connect(db).execute("select count(*) from model_versions").fetchone() == (1,)


def test_a_failed_registration_leaves_a_failed_run_and_no_version(
    store: MlflowModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    def boom(*args: object, **kwargs: object) -> None:
        raise MlflowException("database is locked")

    monkeypatch.setattr(store._client, "create_model_version", boom)
    with pytest.raises(RegistryError, match="database is locked"):
        store.register(write_model_dir(tmp_path / "v1"))
    assert store.list_models() == {"toy": []} and store.is_empty()
    runs = MlflowClient(store.tracking_uri).search_runs(
        [
            MlflowClient(store.tracking_uri)
            .get_experiment_by_name("canaryserve-models")
            .experiment_id
        ]
    )
    assert [r.info.status for r in runs] == ["FAILED"]
