"""Drift end to end: capture at the ingress, the monitor actor, Evidently reports, rollback.

Order-free: each test reads the champion from the registry (every reference version has a
frozen reference) and measures row counts relative to what it found.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from drift.reference import evaluation_images
from tests.integration.broken_models import dimmed_scores
from tests.integration.conftest import wait_for
from tests.integration.media import encode

# Each test starts once the ingress routes to the registry's champion (see conftest).
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("settled_champion")]


def _post(client: httpx.Client, image: np.ndarray, key: str = "drift") -> httpx.Response:
    r = client.post(
        "/v1/pipelines/people",
        files={"image": ("x.jpg", encode(image, ".jpg"), "image/jpeg")},
        headers={"X-Canary-Key": key},
    )
    assert r.status_code == 200, r.text
    return r


def _rows(client: httpx.Client, model: str, version: int) -> int:
    for entry in client.get("/v1/drift").json()["versions"]:
        if entry["model"] == model and entry["version"] == str(version):
            return int(entry["rows"])
    return 0


def _send_and_wait(client: httpx.Client, images: list[np.ndarray], version: int) -> None:
    before = _rows(client, "detector", version)
    for image in images:
        _post(client, image)
    wait_for(
        lambda: _rows(client, "detector", version) >= before + len(images),
        timeout=60,
        what="captured rows to reach the monitor",
    )


def _dark_and_blurred(images: list[np.ndarray]) -> list[np.ndarray]:
    return [cv2.GaussianBlur((img * 0.35).astype(np.uint8), (0, 0), 2.5) for img in images]


def test_darkened_blurred_traffic_flips_the_verdict_and_lands_in_the_workspace(
    client: httpx.Client, store: Any, data_dir: Path
) -> None:
    from drift.evidently_adapter import workspace_projects

    champion = store.aliases("detector")["champion"]
    # Traffic like the evaluation set the reference was frozen from (another seed).
    _send_and_wait(client, evaluation_images(40, seed=1), champion)
    r = client.post("/v1/drift/reports", json={"model": "detector"})
    assert r.status_code == 201, r.text
    calm = r.json()
    assert calm["version"] == str(champion) and calm["kind"] == "reference"
    assert calm["status"] == "no_drift", calm["verdict"]["drifted_features"]

    _send_and_wait(client, _dark_and_blurred(evaluation_images(40, seed=2)), champion)
    drifted = client.post("/v1/drift/reports", json={"model": "detector"}).json()
    assert drifted["status"] == "drift", drifted["verdict"]
    assert {"brightness", "contrast", "sharpness"} <= set(drifted["verdict"]["drifted_features"])
    by_name = {f["name"]: f for f in drifted["verdict"]["features"]}
    assert by_name["brightness"]["method"] and by_name["brightness"]["threshold"] > 0
    assert drifted["verdict"]["reference_rows"] >= 100 and drifted["verdict"]["current_rows"] == 40

    # The HTML report, the listing and the Evidently workspace all have it.
    html = client.get(f"/v1/drift/reports/{drifted['id']}")
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assert "<!doctype html" in html.text.lower() and "brightness" in html.text
    listed = client.get("/v1/drift/reports", params={"model": "detector"}).json()["reports"]
    assert drifted["id"] in {x["id"] for x in listed}
    projects = workspace_projects(data_dir / "drift" / "workspace")
    assert len(projects.get("canaryserve detector", [])) >= 2

    # The champion drifted: an alert (not a rollback), and gauges on /metrics.
    # Other models may have alerts of their own (the suite's OCR traffic is photos, its
    # reference rendered text): the detector's is the one this test caused.
    def detector_alert() -> dict[str, Any] | None:
        alerts = client.get("/v1/drift").json()["alerts"]
        mine = ("detector", str(champion))
        return next((a for a in alerts if (a["model"], a["version"]) == mine), None)

    wait_for(detector_alert, timeout=30, what="a champion drift alert")
    assert store.aliases("detector")["champion"] == champion
    metrics = wait_for(
        lambda: (lambda t: t if "canaryserve_drift_share" in t else None)(
            client.get("/metrics").text
        ),
        timeout=60,
        what="drift gauges in /metrics",
    )
    assert "canaryserve_drift_feature_score" in metrics
    assert 'feature="brightness"' in metrics
    wait_for(
        lambda: all(
            name in client.get("/metrics").text
            for name in (
                "canaryserve_drift_feature_drifted",
                "canaryserve_drift_group_drifted",
                "canaryserve_drift_alerts_total",
            )
        ),
        timeout=60,
        what="the drifted-feature and drifted-group gauges and the alert counter in /metrics",
    )


def test_unknown_report_and_model_are_4xx(client: httpx.Client) -> None:
    r = client.get("/v1/drift/reports/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_drift_report"
    r = client.post("/v1/drift/reports", json={"model": "nope"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_model"
    r = client.post("/v1/drift/reports", json={"model": "detector", "version": "x"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"


def test_a_dead_monitor_never_fails_requests_and_drops_are_counted(
    client: httpx.Client, platform_config: Any, store: Any
) -> None:
    import ray

    from drift.actor import ensure_monitor, get_monitor

    champion = store.aliases("detector")["champion"]
    _send_and_wait(client, evaluation_images(10, seed=3), champion)
    acknowledged = _rows(client, "detector", champion)
    monitor = get_monitor()
    assert monitor is not None
    ray.kill(monitor, no_restart=True)
    try:
        for image in evaluation_images(20, seed=4):
            _post(client, image)  # asserts 200 every time

        def dropped() -> float:
            text = client.get("/metrics").text
            lines = [
                ln
                for ln in text.splitlines()
                if ln.startswith("ray_canaryserve_drift_rows_dropped_total")
            ]
            return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)

        wait_for(lambda: dropped() >= 20, timeout=60, what="dropped drift rows counted")
        assert client.get("/v1/drift").status_code == 503
    finally:
        from serving.app import plan_deployments

        ensure_monitor(platform_config, plan_deployments(platform_config, store).registry)
    # A new monitor has everything the old one acknowledged (SQLite under the data dir).
    assert wait_for(lambda: _rows(client, "detector", champion) >= acknowledged)


def test_a_challenger_whose_predictions_drift_is_rolled_back_with_the_report_id(
    client: httpx.Client, base_url: str, store: Any, tmp_path: Path
) -> None:
    src = store.resolve("detector@champion").path
    challenger = store.register(dimmed_scores(src, tmp_path / "dimmed"), description="dimmed")
    version = int(challenger.version)
    images = [encode(img, ".jpg") for img in evaluation_images(24, seed=5)]
    stop = threading.Event()
    statuses: list[int] = []

    def traffic(i: int) -> None:
        # Paced, under 2 requests a second each: shadowed at 100 %, every request costs two
        # detector runs (80 ms each on an AVX2-only core). Faster, the box saturates and the
        # drift capture (nice 19) falls behind the 12 s windows: windows without pairs have no
        # verdict, and the rollout holds (seen in CI at 3 requests a second each).
        with httpx.Client(base_url=base_url, timeout=120) as c:
            n = 0
            while not stop.wait(0.6):
                r = c.post(
                    "/v1/pipelines/people",
                    files={"image": ("x.jpg", images[(n * 2 + i) % len(images)], "image/jpeg")},
                    headers={"X-Canary-Key": f"user-{i}-{n}"},
                )
                statuses.append(r.status_code)
                n += 1

    threads = [threading.Thread(target=traffic, args=(i,), daemon=True) for i in range(2)]
    for t in threads:
        t.start()
    try:
        r = client.post(
            "/v1/rollouts",
            json={
                "model": "detector",
                "challenger_version": version,
                "mode": "shadow-then-canary",
                "shadow_share": 1.0,
                "shadow_steps": 3,
                "step_weights": [100],
                "interval": "12s",
                "min_requests": 4,
                "threshold": 1,
                "progress_deadline": "120s",
                "checks": [
                    {"name": "error_rate", "threshold": 0.5},
                    # Off, so the check that fails is prediction_drift and nothing else.
                    {"name": "shadow_agreement", "threshold": 0.8, "enabled": False},
                    {"name": "prediction_drift", "threshold": 0.5, "min_samples": 20},
                ],
            },
        )
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        done = wait_for(
            lambda: (lambda d: d if d["state"] in {"rolled_back", "promoted", "aborted"} else None)(
                client.get(f"/v1/rollouts/{rid}").json()
            ),
            timeout=240,
            interval=1,
            what=lambda: "the drifting challenger's rollout to end: " + _story(client, rid),
        )
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    assert done["state"] == "rolled_back" and done["ended_reason"] == "prediction_drift", done
    rolled = next(e for e in done["events"] if e["kind"] == "rolled_back")
    report_id = rolled["detail"]["check"]["report_id"]
    assert report_id
    tags = store.get(f"detector/{version}").tags
    assert tags["canaryserve.rollback.check"] == "prediction_drift"
    assert tags["canaryserve.rollback.report_id"] == report_id
    report = client.get(f"/v1/drift/reports/{report_id}", params={"format": "json"}).json()
    assert report["kind"] == "challenger_vs_champion" and report["status"] == "drift"
    # Fewer people found (dimmed scores fall under the threshold): the count drifts.
    assert "pred_count" in report["verdict"]["drifted_features"]
    assert set(statuses) == {200}


def _story(client: httpx.Client, rollout_id: str) -> str:
    """What a failed wait prints: the rollout's last events, and the capture's counters."""
    events = client.get(f"/v1/rollouts/{rollout_id}").json().get("events", [])[-3:]
    capture = client.get("/v1/drift").json().get("capture")
    return json.dumps({"last_events": events, "capture": capture})
