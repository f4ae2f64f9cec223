"""The HTTP API built over a real data plane (real models, no Ray): routes, gate, errors."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import cv2
import pytest
from fastapi.testclient import TestClient
from skimage import data

from model_registry.settings import RegistryRef
from serving.access import AuthPolicy, add_key
from serving.audit import AuditWriter, open_store
from serving.canary.routes import RolloutRoute
from serving.config import PlatformConfig
from serving.errors import ServiceUnavailable
from serving.http.app import build_app
from serving.http.gate import Gate
from serving.http.services import Services
from tests.unit.serving.conftest import ModelHandle, canary, make_plane


class NoActor:
    """A singleton actor link whose actor is not running."""

    def __init__(self, what: str) -> None:
        self.what = what

    async def call(self, method: str, *args: Any, **kw: Any) -> Any:
        raise ServiceUnavailable(f"the {self.what} is not running")

    async def direct(self, method: str, *args: Any, **kw: Any) -> Any:
        raise ServiceUnavailable(f"the {self.what} is not running")


def no_registry() -> Any:
    raise AssertionError("no registry in this test")


def services(
    config: PlatformConfig,
    handles: dict[tuple[str, int], ModelHandle],
    tmp_path: Path,
    audit: AuditWriter | None,
    rollout: RolloutRoute | None = None,
) -> Services:
    plane = make_plane(config, handles, rollout)
    return Services(
        config,
        RegistryRef("sqlite:///unused.db", str(tmp_path)),
        plane,
        Gate(config.auth, tmp_path / "api_keys.json", audit, store_inputs=False),
        plane.handles,
        NoActor("rollout controller"),
        NoActor("drift monitor"),
        store=no_registry,
    )


@pytest.fixture
def client(
    config: PlatformConfig, handles: dict[tuple[str, int], ModelHandle], tmp_path: Path
) -> Any:
    audit = AuditWriter.from_spec(config.audit, open_store(config.audit, tmp_path))
    app = build_app(services(config, handles, tmp_path, audit))
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 5000)) as c:
        yield c


def _photo() -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def test_a_pipeline_answers_with_its_versions_and_is_audited(client: TestClient) -> None:
    photo = _photo()
    r = client.post(
        "/v1/pipelines/inspect",
        files={"image": ("a.jpg", photo, "image/jpeg")},
        headers={"X-Request-ID": "req-42"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["X-Model-Versions"] == "detector=1,ocr=1"
    body = r.json()
    assert body["request_id"] == "req-42" and body["pipeline"] == "inspect"
    assert body["result"]["persons"]
    record = client.get("/v1/audit/req-42").json()
    assert record["input_sha256"] == hashlib.sha256(photo).hexdigest()
    assert record["nodes"]["detector"]["version"] == 1 and record["status"] == 200


def test_errors_have_a_stable_code_and_are_audited_with_it(client: TestClient) -> None:
    r = client.post(
        "/v1/pipelines/inspect",
        content=b"not an image",
        headers={"Content-Type": "image/png", "X-Request-ID": "bad-1"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "undecodable_image"
    assert client.get("/v1/audit/bad-1").json()["error_code"] == "undecodable_image"
    r = client.post("/v1/pipelines/nope", content=b"x", headers={"Content-Type": "image/png"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_pipeline"
    r = client.post(
        "/v1/models/detector:predict",
        files={"image": ("a.jpg", _photo(), "image/jpeg")},
        headers={"X-Model-Version": "detector=7"},
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "version_not_served"


def test_a_missing_actor_is_a_503_without_internals(client: TestClient) -> None:
    r = client.get("/v1/rollouts")
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert r.json()["error"]["code"] == "service_unavailable"
    assert "not running" not in r.text  # 5xx bodies are generic


def test_operator_routes_answer_only_on_loopback_without_auth(
    config: PlatformConfig, handles: dict[tuple[str, int], ModelHandle], tmp_path: Path
) -> None:
    app = build_app(services(config, handles, tmp_path, None))
    remote = TestClient(app, base_url="http://127.0.0.1", client=("10.1.2.3", 5000))
    r = remote.get("/v1/keys")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert remote.get("/healthz").json() == {"status": "ok"}


def test_pinning_a_challenger_is_an_operators_probe(
    config: PlatformConfig, handles: dict[tuple[str, int], ModelHandle], tmp_path: Path
) -> None:
    photo = {"image": ("a.jpg", _photo(), "image/jpeg")}
    app = build_app(services(config, handles, tmp_path, None, canary(weight=0)))
    remote, local = (
        TestClient(app, base_url="http://127.0.0.1", client=(host, 5000))
        for host in ("10.1.2.3", "127.0.0.1")
    )
    # Auth off: like every operator action, only from loopback.
    for r in (
        remote.post(
            "/v1/pipelines/inspect", files=photo, headers={"X-Model-Version": "detector=2"}
        ),
        remote.post("/v1/models/detector:predict?version=2", files=photo),
    ):
        assert r.status_code == 403 and r.json()["error"]["code"] == "challenger_pin_forbidden"
        assert "detector=2" in r.json()["error"]["message"]
    pinned_champion = remote.post(
        "/v1/pipelines/inspect", files=photo, headers={"X-Model-Version": "detector=1"}
    )
    assert pinned_champion.status_code == 200
    probe = local.post("/v1/models/detector:predict?version=2", files=photo)
    assert probe.status_code == 200 and probe.json()["version"] == 2

    # Auth on: the key's role decides, wherever the caller is.
    keys = tmp_path / "api_keys.json"
    infer, operator = add_key(keys, "app", "infer"), add_key(keys, "ops", "operator")
    secured = config.model_copy(update={"auth": AuthPolicy(enabled=True)})
    app = build_app(services(secured, handles, tmp_path, None, canary(weight=0)))
    remote = TestClient(app, base_url="http://127.0.0.1", client=("10.1.2.3", 5000))
    pin = {"X-Model-Version": "detector=2"}
    refused = remote.post("/v1/pipelines/inspect", files=photo, headers={**pin, "X-API-Key": infer})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "challenger_pin_forbidden"
    allowed = remote.post(
        "/v1/pipelines/inspect", files=photo, headers={**pin, "X-API-Key": operator}
    )
    assert allowed.status_code == 200 and allowed.headers["X-Model-Versions"] == "detector=2,ocr=1"
