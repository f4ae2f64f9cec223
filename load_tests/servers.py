"""Start and stop the servers a benchmark compares, each as its own process on loopback.

:class:`Served` runs a command, waits until its readiness URL answers 200, and stops it with
SIGTERM (then SIGKILL if it hangs), so each arm of a comparison runs with the other stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


class Served:
    def __init__(self, name: str, argv: list[str], ready_url: str, ready_timeout_s: float) -> None:
        self.name = name
        self.argv = argv
        self.ready_url = ready_url
        self.ready_timeout_s = ready_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self.log = Path(f"/tmp/canaryserve-bench-{name}.log")

    def __enter__(self) -> Served:
        self._proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                raise RuntimeError(f"{self.name} exited with {code}; see {self.log}")
            try:
                if httpx.get(self.ready_url, timeout=5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.__exit__()
        raise RuntimeError(
            f"{self.name} was not ready within {self.ready_timeout_s:g}s; see {self.log}"
        )

    def __exit__(self, *_: object) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def peer(model_path: Path, size: int, port: int) -> Served:
    argv = [sys.executable, "-m", "load_tests.peer", str(model_path), "--port", str(port)]
    return Served("peer", [*argv, "--size", str(size)], f"http://127.0.0.1:{port}/healthz", 60)


def canaryserve(port: int) -> Served:
    exe = str(Path(sys.executable).parent / "canaryserve")
    return Served("canaryserve", [exe, "serve", "--port", str(port)],
                  f"http://127.0.0.1:{port}/readyz", 900)  # fmt: skip
