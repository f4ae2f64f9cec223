"""``POST /v1/drift/baselines``: who may freeze a baseline, which version, and what is audited."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from drift.reference.baseline import BaselineRequest
from serving.access import AuthPolicy, add_key
from serving.audit import AuditWriter, open_store
from serving.config import PlatformConfig
from serving.http.app import build_app
from tests.unit.serving.conftest import ModelHandle
from tests.unit.serving.http.test_app import services


class Monitor:
    """The drift monitor's side of a baseline: records what it was asked to freeze."""

    def __init__(self) -> None:
        self.asked: list[BaselineRequest] = []

    async def call(self, method: str, *args: Any, **kw: Any) -> Any:
        raise AssertionError(f"unexpected monitor call {method}")

    async def direct(self, method: str, *args: Any, **kw: Any) -> Any:
        assert method == "baseline"
        (request,) = args
        self.asked.append(request)
        record = {"n": 2, "rows": 500, "source": request.source, "baseline": request.described}
        return {"model": request.model, "version": request.version, "reference": record}


def _app(
    config: PlatformConfig,
    handles: dict[tuple[str, int], ModelHandle],
    tmp_path: Path,
    monitor: Monitor,
) -> tuple[Any, AuditWriter]:
    audit = AuditWriter.from_spec(config.audit, open_store(config.audit, tmp_path))
    svc = dataclasses.replace(services(config, handles, tmp_path, audit), monitor=monitor)
    return build_app(svc), audit


def test_a_baseline_defaults_to_the_champion_and_is_audited(
    config: PlatformConfig, handles: dict[tuple[str, int], ModelHandle], tmp_path: Path
) -> None:
    monitor = Monitor()
    app, audit = _app(config, handles, tmp_path, monitor)
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 5000)) as client:
        r = client.post("/v1/drift/baselines", json={"model": "detector", "rows": 300})
        assert r.status_code == 201, r.text
        assert r.json()["reference"]["baseline"] == "newest 300 live rows"
        (asked,) = monitor.asked
        assert (asked.model, asked.version, asked.source, asked.rows) == (
            "detector",
            1,
            "traffic",
            300,
        )
        r = client.post(
            "/v1/drift/baselines", json={"model": "detector", "version": 2, "window_s": 3600}
        )
        assert r.status_code == 201 and monitor.asked[-1].version == 2
    assert audit.flush()
    done = audit.store.query_admin(action="drift.baseline")
    assert sorted(a["target"] for a in done) == ["detector/1", "detector/2"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "nope"}, 404, "unknown_model"),
        ({"model": "detector", "rows": 10, "window_s": 5}, 422, "invalid_baseline"),
        ({"model": "detector", "source": "dir"}, 422, "invalid_baseline"),
        ({"model": "detector", "version": "two"}, 422, "invalid_baseline"),
        ([1, 2], 422, "invalid_baseline"),
    ],
)
def test_a_baseline_that_cannot_be_met_is_a_4xx_with_a_stable_code(
    config: PlatformConfig,
    handles: dict[tuple[str, int], ModelHandle],
    tmp_path: Path,
    body: Any,
    status: int,
    code: str,
) -> None:
    monitor = Monitor()
    app, _ = _app(config, handles, tmp_path, monitor)
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 5000)) as client:
        r = client.post("/v1/drift/baselines", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert monitor.asked == []


def test_a_folder_baseline_takes_the_admin_role(
    config: PlatformConfig, handles: dict[tuple[str, int], ModelHandle], tmp_path: Path
) -> None:
    keys = tmp_path / "api_keys.json"
    operator, admin = add_key(keys, "ops", "operator"), add_key(keys, "root", "admin")
    infer = add_key(keys, "app", "infer")
    secured = config.model_copy(update={"auth": AuthPolicy(enabled=True)})
    monitor = Monitor()
    app, _ = _app(secured, handles, tmp_path, monitor)
    folder = {"model": "detector", "source": "dir", "dir": str(tmp_path)}
    with TestClient(app, base_url="http://127.0.0.1", client=("10.1.2.3", 5000)) as client:

        def post(body: dict[str, Any], key: str) -> Any:
            return client.post("/v1/drift/baselines", json=body, headers={"X-API-Key": key})

        assert post({"model": "detector"}, infer).status_code == 403
        assert post({"model": "detector"}, operator).status_code == 201
        assert post(folder, operator).status_code == 403
        assert post(folder, admin).status_code == 201
    assert [a.source for a in monitor.asked] == ["traffic", "dir"]
