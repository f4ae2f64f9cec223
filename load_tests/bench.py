"""Throughput and latency of canaryserve: against the plain server a user would write, and
against its own in-process limit.

    # canaryserve vs the peer (load_tests/peer.py) on the champion's ONNX file: the bench starts
    # and stops each server itself, alternating the arms, and prints one table with the ratios
    .venv/bin/python -m load_tests.bench --peer [--rounds 2] [--seconds 10] [--clip]

    # a live platform (make serve in another terminal) vs in-process ONNX Runtime
    .venv/bin/python -m load_tests.bench [--url http://127.0.0.1:8000]

Inputs are real-derived (:mod:`load_tests.media`): an 810x1080 JPEG with six people and a 10 s
25 fps 640x272 clip with two. A benchmark, not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import httpx
import numpy as np

from load_tests import servers
from load_tests.loadgen import Result, machine_line, run_http
from load_tests.media import street_clip, street_photo

PREDICT = "/v1/models/detector:predict"


def _files(body: bytes) -> dict[str, tuple[str, bytes, str]]:
    return {"image": ("street.jpg", body, "image/jpeg")}


def run_inprocess(fn: Callable[[], object], seconds: float, target: str, batch: int) -> Result:
    fn()  # warm-up
    lat = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        s = time.perf_counter()
        fn()
        lat.append((time.perf_counter() - s) * 1000 / batch)
    elapsed = time.perf_counter() - t0
    return Result(target, f"in-process b={batch}", 1, len(lat) * batch, elapsed, lat)


def time_clip(url: str, video: bytes, runs: int) -> list[tuple[float, dict[str, int]]]:
    """Wall clock of ``POST /v1/pipelines/clip`` (upload included), and what it found."""
    out = []
    with httpx.Client(base_url=url, timeout=300) as c:
        for _ in range(runs):
            t0 = time.perf_counter()
            r = c.post("/v1/pipelines/clip", files={"video": ("street.mp4", video, "video/mp4")})
            dt = time.perf_counter() - t0
            r.raise_for_status()
            result = r.json()["result"]
            out.append((dt, {k: len(v) for k, v in result.items()}))
    return out


def _row(name: str, r: Result) -> str:
    return (
        f"{name:<12} {r.concurrency:>4} {r.requests:>6} {r.errors:>4} {r.share(503):>6.1%} "
        f"{r.rps:>8.1f} {r.pct(50):>8.1f} {r.pct(95):>8.1f} {r.pct(99):>8.1f}"
    )


HEAD = (
    f"{'server':<12} {'conc':>4} {'ok':>6} {'err':>4} {'503':>6} {'req/s':>8} "
    f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
)


def peer_comparison(args: argparse.Namespace) -> None:
    from model_registry.mlflow_store import MlflowModelStore

    body = street_photo()
    levels = [int(c) for c in args.concurrency.split(",")]
    cs_port, peer_port = args.port, args.port + 101
    video = street_clip(Path(tempfile.mkdtemp()) / "street.mp4") if args.clip else b""
    runs: list[tuple[int, str, Result]] = []
    clips: list[tuple[float, dict[str, int]]] = []
    model: tuple[Path, int] | None = None
    for rnd in range(args.rounds):
        with servers.canaryserve(cs_port):
            if model is None:  # the champion's own ONNX file (the registry exists now)
                resolved = MlflowModelStore().resolve("detector@champion")
                manifest = resolved.manifest
                model = (manifest.artifact_path(resolved.path, "model"), manifest.input.width)
                print(f"champion detector: v{resolved.info.version} {model[0]} ({model[1]} px)")
            url = f"http://127.0.0.1:{cs_port}"
            for c in levels:
                r = run_http(url, PREDICT, _files(body), c, args.seconds, "canaryserve")
                runs.append((rnd, "canaryserve", r))
            if video:
                clips += time_clip(url, video, args.clip_runs)
        with servers.peer(model[0], model[1], peer_port):
            for c in levels:
                r = run_http(f"http://127.0.0.1:{peer_port}", "/predict", _files(body), c,
                             args.seconds, "peer")  # fmt: skip
                runs.append((rnd, "peer", r))

    print(f"\n{machine_line()}")
    print(f"image: 810x1080 JPEG {len(body)} bytes; {args.seconds:g} s per row, closed loop")
    print(HEAD)
    print("-" * len(HEAD))
    for rnd, name, r in sorted(runs, key=lambda x: (x[2].concurrency, x[1], x[0])):
        print(_row(f"{name} #{rnd + 1}", r))
    print("\nratios canaryserve / peer (median over rounds)")
    for c in levels:
        pairs = [
            (a, b)
            for rnd in range(args.rounds)
            for (ra, na, a) in runs
            for (rb, nb, b) in runs
            if ra == rb == rnd and na == "canaryserve" and nb == "peer" and a.concurrency == c
            and b.concurrency == c
        ]  # fmt: skip
        tput = statistics.median(a.rps / b.rps for a, b in pairs if b.rps)
        p50 = statistics.median(a.pct(50) - b.pct(50) for a, b in pairs)
        p99 = statistics.median(a.pct(99) / b.pct(99) for a, b in pairs if b.latencies_ms)
        print(f"  c={c:<3} throughput {tput:5.2f}x   p50 {p50:+7.1f} ms   p99 {p99:5.2f}x")
    if clips:
        times = [t for t, _ in clips]
        print(
            f"\nclip 10 s @ 25 fps 640x272 ({len(video)} bytes) through /v1/pipelines/clip: "
            f"median {statistics.median(times):.2f} s over {len(times)} "
            f"(min {min(times):.2f}, max {max(times):.2f}); found {clips[-1][1]}"
        )


def live_vs_inprocess(args: argparse.Namespace) -> None:
    from deployments.loader import load_model
    from deployments.runtime import RuntimeSpec
    from model_registry.mlflow_store import MlflowModelStore

    body = street_photo()
    image = cv2.cvtColor(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR),
                         cv2.COLOR_BGR2RGB)  # fmt: skip
    store = MlflowModelStore()
    spec = RuntimeSpec(intra_op_num_threads=args.threads)
    det = load_model(store.resolve("detector@champion").path, spec)
    ocr = load_model(store.resolve("ocr@champion").path, spec)
    results = [
        run_inprocess(lambda: det.predict([image]), args.seconds, "detector", 1),
        run_inprocess(lambda: det.predict([image] * 8), args.seconds, "detector", 8),
        run_inprocess(
            lambda: (det.predict([image]), ocr.predict([image])), args.seconds, "inspect", 1
        ),
    ]
    for target, path in (("detector", PREDICT), ("inspect", "/v1/pipelines/inspect")):
        for c in (int(c) for c in args.concurrency.split(",")):
            results.append(run_http(args.url, path, _files(body), c, args.seconds, target))
    print(f"\n{machine_line()}; in-process ORT intra_op_threads={args.threads}")
    print(f"image 810x1080 JPEG {len(body)} bytes; {args.seconds:g} s per row")
    print(f"{'mode':<17}" + HEAD)
    for r in sorted(results, key=lambda r: (r.target, r.mode != "http", r.concurrency)):
        print(f"{r.mode:<17}" + _row(r.target, r))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer", action="store_true", help="canaryserve vs load_tests/peer.py")
    ap.add_argument("--url", default="http://127.0.0.1:8000", help="live platform (no --peer)")
    ap.add_argument("--port", type=int, default=8000, help="canaryserve's port with --peer")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", default=None, help="default 1,4,16,64 (--peer) or 1,4,16")
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the two arms")
    ap.add_argument("--clip", action="store_true", help="also time the 10 s clip (--peer)")
    ap.add_argument("--clip-runs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="ORT intra-op threads in-process")
    args = ap.parse_args()
    if args.concurrency is None:
        args.concurrency = "1,4,16,64" if args.peer else "1,4,16"
    (peer_comparison if args.peer else live_vs_inprocess)(args)


if __name__ == "__main__":
    main()
