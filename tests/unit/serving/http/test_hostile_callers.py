"""Hostile callers with keys: random keys from one client (a bounded number of hashes, then
429 with Retry-After), and what an infer key may read about the cluster."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.access import AuthPolicy, add_key
from serving.access import keys as keys_module
from serving.config import PlatformConfig
from serving.http.app import build_app
from tests.unit.serving.conftest import ModelHandle
from tests.unit.serving.http.test_app import services


def _random_key() -> str:
    return f"cs_{secrets.token_hex(4)}_{secrets.token_urlsafe(8)}"


@pytest.fixture
def pbkdf2_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = keys_module._hash

    def counted(secret: str, salt: bytes) -> bytes:
        calls.append(secret)
        return real(secret, salt)

    monkeypatch.setattr(keys_module, "_hash", counted)
    return calls


def test_a_key_flood_costs_at_most_the_burst_in_hashes(
    config: PlatformConfig,
    handles: dict[tuple[str, int], ModelHandle],
    tmp_path: Path,
    pbkdf2_calls: list[str],
) -> None:
    keys = tmp_path / "api_keys.json"
    admin = add_key(keys, "root", "admin")
    policy = AuthPolicy(enabled=True, failure_burst=5, failure_rate_per_s=0.5)
    app = build_app(services(config.model_copy(update={"auth": policy}), handles, tmp_path, None))
    flood = TestClient(app, base_url="http://127.0.0.1", client=("10.0.0.66", 5000))
    before = len(pbkdf2_calls)  # add_key hashed the admin key
    codes = []
    for _ in range(40):
        r = flood.get("/v1/keys", headers={"X-API-Key": _random_key()})
        codes.append(r.status_code)
    assert codes == [401] * 5 + [429] * 35
    assert len(pbkdf2_calls) - before == 5
    assert r.json()["error"]["code"] == "too_many_auth_failures"
    assert r.headers["Retry-After"] in {"1", "2"}  # one token at 0.5/s, minus time passed
    assert "internal" not in r.text.lower() and "Traceback" not in r.text
    # Another client is not locked out by the flood, and keeps its own budget.
    other = TestClient(app, base_url="http://127.0.0.1", client=("10.0.0.7", 5000))
    assert other.get("/v1/keys", headers={"X-API-Key": admin}).status_code == 200
    assert other.get("/v1/keys", headers={"X-API-Key": _random_key()}).status_code == 401
    # A good key the server already checked still works from the flooding client.
    assert flood.get("/v1/keys", headers={"X-API-Key": admin}).status_code == 200
    assert len(pbkdf2_calls) - before == 7


def test_with_auth_off_a_flooding_clients_keys_are_ignored_not_hashed(
    config: PlatformConfig,
    handles: dict[tuple[str, int], ModelHandle],
    tmp_path: Path,
    pbkdf2_calls: list[str],
) -> None:
    """With auth off a key only names the caller in the audit trail: past its budget the
    client's keys go unchecked, and it is served anonymously instead of refused."""
    policy = AuthPolicy(failure_burst=3)
    app = build_app(services(config.model_copy(update={"auth": policy}), handles, tmp_path, None))
    client = TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 5000))
    codes = {
        client.get("/v1/keys", headers={"X-API-Key": _random_key()}).status_code for _ in range(20)
    }
    assert codes == {200}
    assert len(pbkdf2_calls) == 3


def test_an_infer_key_sees_no_paths_pids_or_nodes_on_the_models_listing(
    config: PlatformConfig,
    handles: dict[tuple[str, int], ModelHandle],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from serving.http import inference_routes

    monkeypatch.setattr(inference_routes, "_registry_view", lambda svc: {})
    keys = tmp_path / "api_keys.json"
    infer, operator = add_key(keys, "app", "infer"), add_key(keys, "ops", "operator")
    policy = AuthPolicy(enabled=True)
    app = build_app(services(config.model_copy(update={"auth": policy}), handles, tmp_path, None))
    client = TestClient(app, base_url="http://127.0.0.1", client=("10.0.0.8", 5000))

    def versions(key: str) -> dict[str, Any]:
        r = client.get("/v1/models", headers={"X-API-Key": key})
        assert r.status_code == 200, r.text
        return r.json()["served"]["detector"]["versions"]

    public = versions(infer)
    assert public and all(v["model"] == "detector" for v in public.values())
    assert all(v.keys() <= inference_routes.PUBLIC_REPLICA_INFO for v in public.values())
    assert str(tmp_path) not in json.dumps(public) and str(os.getpid()) not in json.dumps(public)
    full = versions(operator)
    assert all("artifact_dir" in v and "pid" in v for v in full.values())


def test_a_keys_file_that_stops_parsing_keeps_the_last_good_keys(
    config: PlatformConfig,
    handles: dict[tuple[str, int], ModelHandle],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hand edit half done must neither lock every caller out nor let anyone in."""
    keys = tmp_path / "api_keys.json"
    admin, other = add_key(keys, "root", "admin"), add_key(keys, "root2", "admin")
    policy = AuthPolicy(enabled=True)
    app = build_app(services(config.model_copy(update={"auth": policy}), handles, tmp_path, None))
    client = TestClient(app, base_url="http://127.0.0.1", client=("10.0.0.9", 5000))
    assert client.get("/v1/keys", headers={"X-API-Key": admin}).status_code == 200
    good = keys.read_text()
    keys.write_text(good[: len(good) // 2])  # truncated mid-record
    # A key not used before the edit is still known (the rollout controller is not running
    # here: 503 comes after the key was accepted), and an unknown one is still refused.
    assert client.get("/v1/rollouts", headers={"X-API-Key": other}).status_code == 503
    assert client.get("/v1/rollouts", headers={"X-API-Key": _random_key()}).status_code == 401
    assert "keeping the last good API keys" in caplog.text
    keys.write_text(good)  # fixed: and a revocation through it takes effect at once
    revoke = client.request(
        "DELETE", "/v1/keys/root2", headers={"X-API-Key": admin, "Content-Type": "application/json"}
    )
    assert revoke.status_code == 200, revoke.text
    assert client.get("/v1/keys", headers={"X-API-Key": other}).status_code == 401


def test_a_keys_file_that_never_parsed_fails_closed(
    config: PlatformConfig, handles: dict[tuple[str, int], ModelHandle], tmp_path: Path
) -> None:
    (tmp_path / "api_keys.json").write_text("{not json")
    policy = AuthPolicy(enabled=True)
    app = build_app(services(config.model_copy(update={"auth": policy}), handles, tmp_path, None))
    client = TestClient(app, base_url="http://127.0.0.1", client=("10.0.0.9", 5000))
    r = client.get("/v1/keys", headers={"X-API-Key": _random_key()})
    assert r.status_code == 500 and r.json()["error"]["code"] == "config_error"
    assert "api_keys.json" not in r.text  # a 5xx never echoes internals
