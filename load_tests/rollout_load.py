"""Drive `inspect` with Locust while one rollout promotes and another rolls back.

Needs a running platform (`make serve`) and Locust in its own environment:

    python3.11 -m venv .venv-load && .venv-load/bin/pip install locust
    .venv/bin/python -m load_tests.rollout_load --locust .venv-load/bin/locust

Steps: (1) start Locust; (2) roll out the other real detector version (promoted through every
step); (3) register a deliberately raising detector and roll it out (rolled back, every caller
still answered by the champion); (4) stop Locust and print total requests, failures and p99.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import httpx

HERE = Path(__file__).parent
ENDED = {"promoted", "rolled_back", "aborted"}


def wait_end(client: httpx.Client, rid: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/v1/rollouts/{rid}").json()
        if r["state"] in ENDED:
            return r
        time.sleep(2)
    raise SystemExit(f"rollout {rid} did not end in {timeout}s")


def start(client: httpx.Client, spec: dict) -> str:
    r = client.post("/v1/rollouts", json=spec)
    if r.status_code != 201:
        raise SystemExit(f"could not start the rollout: {r.status_code} {r.text}")
    return str(r.json()["id"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--locust", default="locust")
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--interval", default="10s")
    args = ap.parse_args()

    from load_tests.bench import bench_image
    from model_registry.mlflow_store import MlflowModelStore
    from tests.integration.broken_models import raising

    img = bench_image()
    cv2.imwrite(str(HERE / "inspect.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    store = MlflowModelStore()
    out = Path(tempfile.mkdtemp(prefix="locust-"))
    loc = subprocess.Popen(
        [
            args.locust,
            "-f",
            str(HERE / "locustfile.py"),
            "--host",
            args.url,
            "--headless",
            "-u",
            str(args.users),
            "-r",
            str(args.users),
            "--csv",
            str(out / "run"),
            "--only-summary",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    results = []
    try:
        time.sleep(10)
        with httpx.Client(base_url=args.url, timeout=60) as c:
            champion = store.aliases("detector")["champion"]
            other = 2 if champion == 1 else 1
            checks = [
                {"name": "error_rate", "threshold": 0.02},
                {"name": "latency_p99_ratio", "threshold": 10.0},
            ]
            spec = {
                "model": "detector",
                "challenger_version": other,
                "step_weights": [10, 50, 100],
                "interval": args.interval,
                "min_requests": 10,
                "checks": checks,
            }
            results.append(wait_end(c, start(c, spec), 600))
            src = store.resolve("detector@champion").path
            bad = store.register(raising(src, out / "raising"), description="load test: raises")
            spec = {**spec, "challenger_version": bad.version, "step_weights": [50, 100]}
            results.append(wait_end(c, start(c, spec), 600))
        time.sleep(5)
    finally:
        loc.terminate()
        loc.wait(timeout=60)
    rows = list(csv.DictReader(open(out / "run_stats.csv")))
    total = next(r for r in rows if r["Name"] == "Aggregated")
    for r in results:
        print(f"rollout {r['id']}: {r['state']} ({r.get('ended_reason')})")
    print(
        f"requests {total['Request Count']}  failures {total['Failure Count']}  "
        f"p50 {total['50%']} ms  p95 {total['95%']} ms  p99 {total['99%']} ms  "
        f"rps {float(total['Requests/s']):.1f}"
    )
    sys.exit(1 if int(total["Failure Count"]) else 0)


if __name__ == "__main__":
    main()
