"""What a web page in the operator's browser could forge: checked before routing and auth."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.datastructures import Headers

from serving.config import IngressSpec, PlatformConfig
from serving.http.app import build_app
from serving.http.gate import Gate
from serving.http.guard import host_name, refusal
from tests.unit.serving.conftest import ModelHandle
from tests.unit.serving.http.test_app import services

LOOPBACK = ("localhost", "127.0.0.1", "::1")


@pytest.fixture
def app(config: PlatformConfig, handles: dict[tuple[str, int], ModelHandle], tmp_path: Path) -> Any:
    return build_app(services(config, handles, tmp_path, None))


def test_a_rebinding_page_s_host_is_refused_before_it_can_read_or_make_a_key(app: Any) -> None:
    # DNS rebinding: evil.example resolves to 127.0.0.1, so the caller *is* loopback (an
    # admin with auth off) and the browser lets the page read the answer.
    page = TestClient(app, base_url="http://evil.example:8000", client=("127.0.0.1", 5000))
    for r in (page.get("/v1/keys"), page.post("/v1/keys", json={"name": "x", "role": "admin"})):
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host"
        assert "evil.example:8000" in r.json()["error"]["message"]
        assert "cs_" not in r.text
    operator = TestClient(app, base_url="http://127.0.0.1:8000", client=("127.0.0.1", 5000))
    assert operator.get("/v1/keys").status_code == 200


def test_cross_site_state_changes_are_refused_unless_sent_as_json(app: Any) -> None:
    local = TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 5000))
    forged = [
        # A page's <form> or fetch(..., {mode: "no-cors"}): text/plain, no preflight.
        local.post(
            "/v1/rollouts",
            content=b'{"model": "detector", "challenger_version": 2, "step_weights": [100]}',
            headers={"Content-Type": "text/plain"},
        ),
        local.post("/v1/rollouts/r1/abort"),  # no body, no Content-Type
        local.post("/v1/keys", data={"name": "x", "role": "admin"}),  # a form
        local.delete("/v1/keys/ops"),
    ]
    for r in forged:
        assert r.status_code == 415, r.text
        assert r.json()["error"]["code"] == "unsupported_media_type"
    made = local.post("/v1/keys", json={"name": "ops", "role": "operator"})
    assert made.status_code == 201 and made.json()["key"].startswith("cs_")
    gone = local.delete("/v1/keys/ops", headers={"Content-Type": "application/json"})
    assert gone.status_code == 200


def test_inference_uploads_and_reads_need_no_json() -> None:
    for method, path, ctype in [
        ("POST", "/v1/pipelines/inspect", "multipart/form-data; boundary=x"),
        ("POST", "/v1/models/detector:predict", "image/jpeg"),
        ("GET", "/v1/rollouts", ""),
        ("POST", "/healthz", ""),
    ]:
        headers = Headers({"host": "127.0.0.1:8000", "content-type": ctype})
        assert refusal(method, path, headers, LOOPBACK) is None


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:8000", "127.0.0.1"),
        ("LOCALHOST", "localhost"),
        ("[::1]:8000", "::1"),
        ("::1", "::1"),
        ("evil.example:80", "evil.example"),
    ],
)
def test_the_host_name_is_read_without_port_brackets_or_case(header: str, name: str) -> None:
    assert host_name(header) == name


def test_a_star_answers_to_any_host_and_the_default_only_to_loopback_names() -> None:
    headers = Headers({"host": "canaryserve.prod.svc:8000"})
    assert refusal("GET", "/v1/models", headers, ["*"]) is None
    refused = refusal("GET", "/v1/models", headers, IngressSpec().allowed_hosts)
    assert refused is not None and refused.code == "invalid_host"
    assert refusal("GET", "/v1/models", Headers({}), LOOPBACK) is not None  # no Host at all


def test_the_audit_actor_is_never_a_header_the_caller_writes() -> None:
    request: Any = SimpleNamespace(
        headers={"x-actor": "mallory"}, client=SimpleNamespace(host="127.0.0.1")
    )
    anonymous: Any = SimpleNamespace(key_id=None, name="anonymous")
    keyed: Any = SimpleNamespace(key_id="k1", name="alice-ops")
    assert Gate.actor(request, anonymous) == "127.0.0.1"
    assert Gate.actor(request, keyed) == "alice-ops"
