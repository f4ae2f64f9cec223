"""One Ray cluster per session, a real registry with the real reference models, real HTTP.

The registry lives in a temp data dir; built reference models and downloaded wheels are shared
through the repo's cache dir so a second run only registers.
"""

from __future__ import annotations

import copy
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

# A pipeline that exists only in YAML: the test that uses it proves no code change is needed.
EXTRA_PIPELINE = {
    "description": "Text only, for the YAML-only pipeline test.",
    "input": "image",
    "nodes": [
        {"name": "read", "op": "ocr", "model": "ocr", "inputs": ["image"]},
        {
            "name": "find",
            "op": "detect",
            "model": "detector",
            "inputs": ["image"],
            "params": {"min_score": 0.5},
        },
    ],
    "output": {"lines": "read", "people": "find"},
}


# Person detection only: the fast pipeline the rollout tests drive traffic through.
PEOPLE_PIPELINE = {
    "input": "image",
    "nodes": [{"name": "detect", "op": "detect", "model": "detector", "inputs": ["image"]}],
    "output": {"people": "detect"},
}


def wait_for(
    cond: Callable[[], Any],
    timeout: float = 60.0,
    interval: float = 0.5,
    what: str | Callable[[], str] = "condition",
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = cond()
            if last:
                return last
        except Exception as e:
            last = e
        time.sleep(interval)
    label = what() if callable(what) else what
    raise AssertionError(f"timed out after {timeout}s waiting for {label}; last: {last!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("canaryserve-data")
    old = {
        k: os.environ.get(k)
        for k in ("CANARYSERVE_DATA_DIR", "CANARYSERVE_CACHE_DIR", "MLFLOW_TRACKING_URI")
    }
    os.environ["CANARYSERVE_DATA_DIR"] = str(path)
    os.environ["CANARYSERVE_CACHE_DIR"] = str(REPO / ".canaryserve" / "cache")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield path
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def store(data_dir: Path) -> Any:
    from model_registry.mlflow_store import MlflowModelStore
    from model_registry.references.bootstrap import bootstrap

    s = MlflowModelStore()
    bootstrap(s)
    return s


@pytest.fixture(scope="session")
def ray_cluster(data_dir: Path) -> Iterator[None]:
    import ray
    from ray import serve

    from deployments.runtime import cuda_device_present
    from serving.cluster.engine import ray_env, reap_stray_haproxy
    from serving.config import ServerSpec

    # Autoscale on what replicas report: the test driver's own handle is then not what decides
    # whether the GPU test scales (the driver process is busy with many other things).
    os.environ.setdefault("RAY_SERVE_COLLECT_AUTOSCALING_METRICS_ON_HANDLE", "0")
    # Logical GPUs let the scheduling tests place fractional-GPU replicas on a CPU machine. With a
    # real CUDA device Ray detects the GPUs instead (None): a logical GPU id that does not exist
    # (GPU 1 on a one-GPU machine) would make a replica's CUDA session fail.
    # The cluster `canaryserve serve` starts on loopback (HAProxy front, Serve's fast path):
    # set for ray.init, which hands it to the raylet and every worker, then restored so no
    # later process of this session inherits it. One difference: Serve's controller loop at
    # Ray's 0.1 s, not the server's 0.5 s (which saves idle CPU): a `serve.run` of a one-replica
    # app took 2.1 s instead of 3.6 s (side by side, 4 runs each), and the tests deploy,
    # roll out and restart versions all the time.
    env = ray_env(ServerSpec(host="127.0.0.1", control_loop_interval_s=0.1))
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    ray.init(
        num_cpus=4,
        num_gpus=None if cuda_device_present() else 2,
        include_dashboard=False,
        logging_level="WARNING",
        _metrics_export_port=free_port(),
        runtime_env={"env_vars": {"CANARYSERVE_DATA_DIR": str(data_dir)}},
    )
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    yield
    serve.shutdown()
    ray.shutdown()
    reap_stray_haproxy()


@pytest.fixture(scope="session")
def platform_config() -> Any:
    from serving.config import DEFAULT_CONFIG, parse_config

    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw = copy.deepcopy(raw)
    raw["pipelines"]["read_and_find"] = EXTRA_PIPELINE
    raw["pipelines"]["people"] = PEOPLE_PIPELINE
    # The clip pipeline, alerting on walking: the operations test needs an alert to count.
    watch = copy.deepcopy(raw["pipelines"]["clip"])
    for node in watch["nodes"]:
        if node["op"] == "classify_tracks":
            node["params"] = {**node.get("params", {}), "uncertain_below": 0.3}
        if node["op"] == "alerts":
            node["params"] = {**node.get("params", {}), "labels": ["walking"]}
    raw["pipelines"]["watch"] = watch
    # Every request body kept by its sha256: the audit test reads one back.
    raw["audit"] = {**raw.get("audit", {}), "store_inputs": True}
    # Fast reactions for the rollout tests: they run minutes, not hours.
    raw["canary"] = {
        "reconcile_interval_s": 1.0,
        "controller_tick_s": 0.5,
        # A retired version's app is deleted this long after it lost its route. The ingress
        # must have re-read the aliases by then: at 3 s (3 reconcile intervals) a loaded CI
        # box once served a request to a deleted champion (502). Time-based drains race a slow
        # reconcile; acknowledged drains are issue 15's fix.
        "drain_delay_s": 8.0,
        "stats_flush_s": 0.3,
        "shadow_max_concurrency": 4,
        "breaker_failures": 3,
        "breaker_cooldown_s": 5.0,
    }
    # Drift: small windows and quick schedules so a verdict flips within a test.
    raw["drift"] = {
        "flush_interval_s": 0.3,
        "report_every_rows": 40,
        "window_rows": 40,
        "min_rows": 30,
        "schedule_tick_s": 0.5,
        "rollout_eval_interval_s": 1.0,
    }
    return parse_config(raw, source="test")


@pytest.fixture(scope="session")
def base_url(ray_cluster: None, store: Any, platform_config: Any) -> str:
    from ray import serve

    from serving.app import deploy

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    deploy(platform_config, store)
    url = f"http://127.0.0.1:{port}"
    wait_for(
        lambda: httpx.get(f"{url}/readyz", timeout=10).status_code == 200,
        timeout=180,
        what="readyz",
    )
    return url


@pytest.fixture(scope="session")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=120) as c:
        yield c


@pytest.fixture
def settled_champion(client: httpx.Client, store: Any) -> int:
    """The detector champion, once the ingress routes all traffic to it.

    A promotion moves the registry's alias at once, and an ended rollout's split is dropped;
    the ingress follows both within a reconcile interval. A test that runs right after one (in
    any order) waits for that here instead of seeing the old champion, or the last rollout's
    challenger, answer for a moment."""

    def settled() -> bool:
        served = client.get("/v1/models").json()["served"]
        return all(
            m["challenger"] is None
            and m["weight"] == 0.0
            and m["default_version"] == int(store.aliases(name)["champion"])
            for name, m in served.items()
        )

    wait_for(settled, timeout=60, what="the ingress to drop every rollout's split")

    def routed() -> int | None:
        champion = int(store.aliases("detector")["champion"])
        r = client.post(
            "/v1/pipelines/people", files={"image": ("a.png", _probe_image(), "image/png")}
        )
        return (
            champion
            if r.status_code == 200 and (r.json()["model_versions"]["detector"] == champion)
            else None
        )

    return int(wait_for(routed, timeout=60, what="the ingress to route to the registry's champion"))


def _probe_image() -> bytes:
    from tests.integration.media import astronaut, encode

    return encode(astronaut())
