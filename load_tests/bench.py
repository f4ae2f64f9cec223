"""Throughput and latency of the detector and the ``inspect`` pipeline, HTTP vs in-process.

Run against a live platform (``make serve`` in another terminal), then:

    .venv/bin/python -m load_tests.bench [--url http://127.0.0.1:8000] [--seconds 10]

For each target it prints requests/s and p50/p95/p99 over HTTP at concurrency 1, 4 and 16,
next to the in-process ONNX Runtime throughput of the same model(s) on the same machine (the
limit: no HTTP, no Ray, no serialisation), as a table. A benchmark, not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import httpx
import numpy as np


@dataclass
class Result:
    target: str
    mode: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, round(q / 100 * (len(data) - 1)))]


def bench_image() -> np.ndarray:
    from skimage import data

    img = data.astronaut().copy()
    cv2.putText(img, "RETURN 12345", (20, 480), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 3)
    return img


def run_http(
    url: str, path: str, body: bytes, concurrency: int, seconds: float, target: str
) -> Result:
    lat: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker() -> None:
        nonlocal errors
        with httpx.Client(base_url=url, timeout=60) as c:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    ok = (
                        c.post(path, files={"image": ("b.png", body, "image/png")}).status_code
                        == 200
                    )
                except httpx.HTTPError:
                    ok = False
                dt = (time.perf_counter() - t0) * 1000
                with lock:
                    if ok:
                        lat.append(dt)
                    else:
                        errors += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Result(target, "http", concurrency, len(lat), errors, time.perf_counter() - t0, lat)


def run_inprocess(fn: Callable[[], object], seconds: float, target: str, batch: int) -> Result:
    fn()  # warm-up
    lat = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        s = time.perf_counter()
        fn()
        lat.append((time.perf_counter() - s) * 1000 / batch)
    elapsed = time.perf_counter() - t0
    return Result(target, f"in-process b={batch}", 1, len(lat) * batch, 0, elapsed, lat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--threads", type=int, default=1, help="ORT intra-op threads in-process")
    args = ap.parse_args()

    from deployments.loader import load_model
    from deployments.runtime import RuntimeSpec
    from model_registry.mlflow_store import MlflowModelStore

    image = bench_image()
    _, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    body = buf.tobytes()
    store = MlflowModelStore()
    spec = RuntimeSpec(intra_op_num_threads=args.threads)
    det = load_model(store.resolve("detector@champion").path, spec)
    ocr = load_model(store.resolve("ocr@champion").path, spec)

    results: list[Result] = []
    results.append(run_inprocess(lambda: det.predict([image]), args.seconds, "detector", 1))
    results.append(run_inprocess(lambda: det.predict([image] * 8), args.seconds, "detector", 8))
    results.append(
        run_inprocess(
            lambda: (det.predict([image]), ocr.predict([image])), args.seconds, "inspect", 1
        )
    )
    levels = [int(c) for c in args.concurrency.split(",")]
    for target, path in (
        ("detector", "/v1/models/detector:predict"),
        ("inspect", "/v1/pipelines/inspect"),
    ):
        for c in levels:
            results.append(run_http(args.url, path, body, c, args.seconds, target))

    print(
        f"\nimage {image.shape[1]}x{image.shape[0]} PNG {len(body)} bytes; "
        f"{args.seconds:.0f} s per row; in-process ORT intra_op_threads={args.threads}"
    )
    head = (
        f"{'target':<9} {'mode':<16} {'conc':>4} {'req':>6} {'err':>4} {'req/s':>8} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in sorted(results, key=lambda r: (r.target, r.mode != "http", r.concurrency)):
        print(
            f"{r.target:<9} {r.mode:<16} {r.concurrency:>4} {r.requests:>6} {r.errors:>4} "
            f"{r.rps:>8.1f} {r.pct(50):>8.1f} {r.pct(95):>8.1f} {r.pct(99):>8.1f}"
        )


if __name__ == "__main__":
    main()
