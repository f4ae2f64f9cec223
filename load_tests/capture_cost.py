"""What drift capture costs on the request path: p50/p95 with capture on vs off.

Starts its own local Ray + Serve on the project's data dir (bootstrapped as ``make serve``
does), deploys the default config twice (``drift.enabled`` true and false), and measures
``POST /v1/models/detector:predict`` at concurrency 1, alternating on/off rounds so drift in
machine load hits both arms alike:

    .venv/bin/python -m load_tests.capture_cost [--seconds 15] [--rounds 2] [--drift F=V ...]

``--embedding-only`` skips the platform and measures, on this CPU, what the capture thread
spends per embedded request (:mod:`drift.embeddings`: preprocessing + EfficientNet-Lite0 on one
ONNX Runtime thread), and what that costs per captured request at the configured
``drift.embedding_sample_rate``:

    .venv/bin/python -m load_tests.capture_cost --embedding-only [--images 64]

A benchmark, not a test: it prints a table and asserts nothing.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time

import cv2
import httpx

from load_tests.bench import bench_image, run_http


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def embedding_cost(images: int) -> None:
    """Milliseconds per embedding (single images and batches of 8), and per captured request
    at the default config's sample rate."""
    from drift.embeddings import RUN_BATCH, default_embedder
    from drift.features import image_features
    from drift.reference.photos import photo_draws
    from serving.config import load_config

    embedder = default_embedder()
    if not embedder.available:
        raise SystemExit(f"no embedder at {embedder.path}: run make install (or bootstrap)")
    rate = load_config(None).drift.embedding_sample_rate
    photos = photo_draws(images, seed=11)  # real photos of 320-960 px, as uploads
    embedder.rows(photos[:2])  # opens the session
    rounds: dict[str, list[float]] = {"one at a time": [], f"batches of {RUN_BATCH}": []}
    for _ in range(3):
        started = time.perf_counter()
        for image in photos:
            embedder.rows([image])
        rounds["one at a time"].append((time.perf_counter() - started) / images * 1e3)
        started = time.perf_counter()
        embedder.rows(photos)
        rounds[f"batches of {RUN_BATCH}"].append((time.perf_counter() - started) / images * 1e3)
    started = time.perf_counter()
    for image in photos:
        image_features(image)
    features_ms = (time.perf_counter() - started) / images * 1e3
    print(f"{images} photos, median of 3 rounds, 1 ONNX Runtime thread")
    print("\n| embedding | ms per image |")
    print("|---|---|")
    for name, values in rounds.items():
        print(f"| {name} | {statistics.median(values):.1f} |")
    per_image = statistics.median(rounds["one at a time"])
    print(
        f"\ncapture thread per captured request: features {features_ms:.1f} ms + embedding "
        f"{per_image:.1f} ms x sample rate {rate:g} = {features_ms + per_image * rate:.1f} ms "
        f"(embedding share {per_image * rate:.1f} ms); none of it on the request path"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--drift",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="drift setting for both arms, e.g. --drift monitor_nice=0 (repeatable)",
    )
    ap.add_argument(
        "--embedding-only",
        action="store_true",
        help="no platform: ms per embedding on this CPU, and its cost at the sample rate",
    )
    ap.add_argument("--images", type=int, default=64, help="photos for --embedding-only")
    args = ap.parse_args()
    if args.embedding_only:
        embedding_cost(args.images)
        return
    overrides = dict(item.split("=", 1) for item in args.drift)

    import ray
    from ray import serve

    from model_registry.mlflow_store import MlflowModelStore
    from model_registry.references.bootstrap import bootstrap
    from serving.app import deploy
    from serving.config import load_config

    store = MlflowModelStore()
    bootstrap(store)
    base = load_config(None)
    ray.init(include_dashboard=False, logging_level="WARNING")
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}"
    _ok, buf = cv2.imencode(".png", cv2.cvtColor(bench_image(), cv2.COLOR_RGB2BGR))
    body = buf.tobytes()
    p50s: dict[bool, list[float]] = {True: [], False: []}
    p95s: dict[bool, list[float]] = {True: [], False: []}
    try:
        for _ in range(args.rounds):
            for enabled in (True, False):
                drift = base.drift.model_validate(
                    {**base.drift.model_dump(), **overrides, "enabled": enabled}
                )
                cfg = base.model_copy(update={"drift": drift})
                deploy(cfg, store)
                deadline = time.monotonic() + 120
                while httpx.get(f"{url}/readyz", timeout=10).status_code != 200:
                    if time.monotonic() > deadline:
                        raise SystemExit("platform did not become ready")
                    time.sleep(1)
                # Steady state: first calls warm the replicas, the capture thread and the monitor.
                run_http(url, "/v1/models/detector:predict", body, 1, 8, "warm-up")
                r = run_http(url, "/v1/models/detector:predict", body, 1, args.seconds, "detector")
                p50s[enabled].append(r.pct(50))
                p95s[enabled].append(r.pct(95))
                kept = ""
                if enabled:  # a cheap capture that drops its rows would be no capture at all
                    cap = httpx.get(f"{url}/v1/drift", timeout=30).json().get("capture", {})
                    kept = f", rows sent {cap.get('sent_rows')} dropped {cap.get('dropped_rows')}"
                print(
                    f"capture {'on ' if enabled else 'off'}: {r.requests} requests, "
                    f"p50 {r.pct(50):.1f} ms, p95 {r.pct(95):.1f} ms, errors {r.errors}{kept}"
                )
    finally:
        serve.shutdown()
        ray.shutdown()
    on, off = statistics.median(p50s[True]), statistics.median(p50s[False])
    print("\n| capture | p50 ms (median of rounds) | p95 ms |")
    print("|---|---|---|")
    print(f"| on | {on:.1f} | {statistics.median(p95s[True]):.1f} |")
    print(f"| off | {off:.1f} | {statistics.median(p95s[False]):.1f} |")
    print(f"\ncapture adds {on - off:+.1f} ms to p50")


if __name__ == "__main__":
    main()
