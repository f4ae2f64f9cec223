"""serving.access.admin: API keys over HTTP (registration: tests/unit/model_registry)."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.access.admin import UnknownApiKey, create_key, delete_key
from serving.access.keys import ApiKeyStore
from serving.errors import InvalidInput


def test_a_created_key_authenticates_with_its_role_and_is_shown_once(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    out = create_key(path, {"name": "ci-bot", "role": "operator"})
    assert (out["name"], out["role"]) == ("ci-bot", "operator") and out["key"].startswith("cs_")
    assert out["key"] not in path.read_text()  # only its hash is at rest
    principal = ApiKeyStore.load(path, {}).authenticate(out["key"])
    assert principal is not None and principal.role == "operator"


@pytest.mark.parametrize(
    "body, match",
    [
        ([], "JSON object"),
        ({"name": "x"}, "string 'name' and 'role'"),
        ({"name": "x", "role": "root"}, "unknown role 'root'"),
        ({"name": "bad name!", "role": "infer"}, "bad key name"),
    ],
)
def test_bad_key_requests_are_invalid_input(tmp_path: Path, body: object, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        create_key(tmp_path / "keys.json", body)


def test_duplicate_names_and_unknown_revocations_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    create_key(path, {"name": "a", "role": "infer"})
    with pytest.raises(InvalidInput, match="already exists"):
        create_key(path, {"name": "a", "role": "admin"})
    delete_key(path, "a")
    with pytest.raises(UnknownApiKey) as err:
        delete_key(path, "a")
    assert err.value.status_code == 404 and err.value.code == "unknown_api_key"
