"""MlflowModelStore against a real ``mlflow server`` with proxied artifacts (no Ray needed).

The server runs as a subprocess on 127.0.0.1 with its own SQLite backend and artifact
destination in a temp dir; it is always stopped, even when a test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from model_registry import settings
from model_registry.mlflow_store import MlflowModelStore
from model_registry.store import CHAMPION, hash_dir
from serving.errors import ArtifactIntegrityError, RegistryError

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # The server runs uvicorn workers as children; its own session lets us stop them all.
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("mlflow-server")
    artifacts = root / "artifacts"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
        "--artifacts-destination", str(artifacts),
        "--serve-artifacts",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / "server.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"mlflow server did not become healthy at {url}:\n{tail}")
            time.sleep(0.5)
        yield url, artifacts
    finally:
        _stop(proc)
        log.close()


def _model_dir(path: Path, payload: bytes) -> Path:
    path.mkdir(parents=True)
    (path / "model.onnx").write_bytes(payload)
    manifest = {
        "name": "detector",
        "task": "detection",
        "artifacts": {"model": "model.onnx"},
        "input": {"width": 64, "height": 64, "layout": "NCHW"},
        "source": {"package": "toypkg==1.0"},
        "metrics": {"map50": 0.5},
    }
    (path / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    return path


@pytest.fixture
def server_store(
    mlflow_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> MlflowModelStore:
    url, _ = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv(settings.ENV_DATA_DIR, str(tmp_path / "data"))
    return MlflowModelStore()


def test_register_alias_and_resolve_through_the_server(
    server_store: MlflowModelStore, mlflow_server: tuple[str, Path], tmp_path: Path
) -> None:
    _, artifacts = mlflow_server
    assert server_store.tracking_uri.startswith("http://127.0.0.1:")
    assert server_store.artifact_location is None  # the server's proxied default

    started = time.perf_counter()
    info = server_store.register(_model_dir(tmp_path / "v1", b"weights-1"))
    register_s = time.perf_counter() - started
    assert info.source_uri.startswith("mlflow-artifacts:")
    assert info.lineage == {"package": "toypkg==1.0"} and info.metrics == {"map50": 0.5}
    # Proxied: the bytes live in the server's artifact destination, not the client's data dir.
    stored = [p for p in artifacts.rglob("model.onnx") if p.read_bytes() == b"weights-1"]
    assert len(stored) == 1
    assert not (tmp_path / "data" / "mlartifacts").exists()

    server_store.set_alias(info.name, CHAMPION, info.version)
    assert server_store.aliases("detector")[CHAMPION] == info.version

    started = time.perf_counter()
    resolved = server_store.resolve("detector@champion")
    resolve_s = time.perf_counter() - started
    assert resolved.info.version == info.version
    assert resolved.path == tmp_path / "data" / "models" / "detector" / str(info.version)
    assert hash_dir(resolved.path) == hash_dir(tmp_path / "v1")
    assert server_store.list_models()["detector"][-1].aliases == (CHAMPION,)
    started = time.perf_counter()
    again = server_store.register(_model_dir(tmp_path / "v2", b"weights-2"))
    second_s = time.perf_counter() - started
    assert again.version == info.version + 1
    print(
        f"\nserver store: register {register_s:.2f}s (then {second_s:.2f}s), "
        f"resolve {resolve_s:.2f}s"
    )

    # Tampering on the server side is caught by a fresh download.
    stored[0].write_bytes(b"evil")
    fresh = MlflowModelStore(models_dir=tmp_path / "other-models")
    with pytest.raises(ArtifactIntegrityError, match=r"'model.onnx'"):
        fresh.resolve("detector@champion")


# Without retries a dead server is an error at once; pytest-timeout fails the test if the
# client retries for minutes instead (a bound on a hang, not a latency measurement).
@pytest.mark.timeout(120)
def test_unreachable_server_is_a_registry_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv(settings.ENV_DATA_DIR, str(tmp_path / "data"))
    store = MlflowModelStore(tracking_uri=f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(RegistryError, match=r"model registry at http://127.0.0.1"):
        store.get("detector@champion")
