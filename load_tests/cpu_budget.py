"""CPU seconds per request, per process of the whole box, while driving a running server.

Throughput on a shared 2-core box moves 20 % between runs of one build; the CPU each process
spends per request moves far less, and it says where the time goes: the model replica, the
ingress, Serve's proxy, the idle platform. Reads ``/proc`` (Linux).

    .venv/bin/python -m load_tests.cpu_budget --url http://127.0.0.1:8000 --concurrency 16
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from load_tests.loadgen import run_http
from load_tests.media import street_photo

PREDICT = "/v1/models/detector:predict"


def cpu_seconds(proc: Path = Path("/proc")) -> dict[int, tuple[str, float]]:
    """pid -> (command, user + system CPU seconds so far) of every process."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        name = argv0 or stat.split("(", 1)[1].rsplit(")", 1)[0]
        out[int(entry.name)] = (name[:70], (int(fields[11]) + int(fields[12])) / tick)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--path", default=PREDICT, help="route that takes the photo as 'image'")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args()

    files = {"image": ("street.jpg", street_photo(), "image/jpeg")}
    before, t0 = cpu_seconds(), time.monotonic()
    result = run_http(args.url, args.path, files, args.concurrency, args.seconds, "server", 0.0)
    after, wall = cpu_seconds(), time.monotonic() - t0
    n = max(1, result.requests)
    spent = sorted(
        ((cpu - before.get(pid, (name, 0.0))[1], pid, name) for pid, (name, cpu) in after.items()),
        reverse=True,
    )
    total = sum(s for s, *_ in spent if s > 0)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(
        f"{result.requests} requests at c={args.concurrency} in {wall:.1f} s "
        f"({result.requests / wall:.1f} req/s); the box spent {total:.1f} CPU s, "
        f"{1000 * total / n:.1f} ms per request"
    )
    for s, pid, name in spent[: args.top]:
        print(f"{1000 * s / n:8.1f} ms/request {s:7.1f} s  {pid:>7}  {name}")


if __name__ == "__main__":
    main()
