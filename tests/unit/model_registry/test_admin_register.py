"""serving.access.admin.register: model registration over HTTP checks before it registers."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_registry.mlflow_store import MlflowModelStore
from serving.access.admin import register
from serving.errors import InvalidInput, ModelValidationError
from tests.unit.model_registry.test_validate import write_detector_dir


def test_a_readable_model_dir_registers_with_its_alias(
    tmp_path: Path, store: MlflowModelStore
) -> None:
    source = write_detector_dir(tmp_path / "det")
    out = register(store, "detector", {"source": str(source), "alias": "challenger"})
    assert (out["name"], out["version"], out["alias"]) == ("detector", 1, "challenger")
    assert store.aliases("detector") == {"challenger": 1}
    assert store.reference("detector", 1) is not None  # frozen like any checked registration


@pytest.mark.parametrize(
    "body, match",
    [
        ("x", "JSON object"),
        ({}, "'source' must be the path"),
        ({"source": "/no/such/dir"}, "not a directory"),
        ({"source": "DIR", "alias": "champion"}, "use a rollout"),
    ],
)
def test_bad_registrations_are_invalid_input_and_register_nothing(
    tmp_path: Path, store: MlflowModelStore, body: object, match: str
) -> None:
    source = write_detector_dir(tmp_path / "det")
    if isinstance(body, dict) and body.get("source") == "DIR":
        body = {**body, "source": str(source)}
    with pytest.raises(InvalidInput, match=match):
        register(store, "detector", body)
    assert store.is_empty()


def test_the_url_name_must_match_the_manifest(tmp_path: Path, store: MlflowModelStore) -> None:
    source = write_detector_dir(tmp_path / "det")
    with pytest.raises(InvalidInput, match="holds model 'detector', not 'ocr'"):
        register(store, "ocr", {"source": str(source)})
    broken = write_detector_dir(tmp_path / "bad", rows=50)
    with pytest.raises(ModelValidationError):
        register(store, "detector", {"source": str(broken)})
    assert store.is_empty()
