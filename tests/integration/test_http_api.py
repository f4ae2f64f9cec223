"""The serving platform over real HTTP, on the real reference models."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import wait_for
from tests.integration.media import astronaut, encode, person_clip, text_image, video_bytes

# Each test starts once the ingress routes to the registry's champion (see conftest).
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("settled_champion")]
ACTION_V2 = {"X-Model-Version": "action=2"}


def _versions_header(r: httpx.Response) -> dict[str, int]:
    return {k: int(v) for k, v in (p.split("=") for p in r.headers["X-Model-Versions"].split(","))}


def _champions(client: httpx.Client) -> dict[str, int]:
    """Each model's champion now: a rollout module (in any order) may have promoted another."""
    registry = client.get("/v1/models").json()["registry"]
    return {name: int(m["aliases"]["champion"]) for name, m in registry.items()}


def test_health_and_docs(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and "detector-v2" in ready["deployments"]
    spec = client.get("/openapi.json").json()
    assert "/v1/pipelines/{name}" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_inspect_finds_the_astronaut(client: httpx.Client) -> None:
    r = client.post(
        "/v1/pipelines/inspect", files={"image": ("a.png", encode(astronaut()), "image/png")}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["request_id"] == r.headers["X-Request-Id"]
    champions = _champions(client)
    want = {"detector": champions["detector"], "ocr": champions["ocr"]}
    assert body["model_versions"] == want == _versions_header(r)
    persons = body["result"]["persons"]
    assert len(persons) >= 1
    x1, y1, x2, y2 = persons[0]["box"]
    # The astronaut's head and shoulders are in the upper middle of the 512x512 photo.
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    assert 120 < cx < 400 and 0 < cy < 300, persons[0]
    # The keypoints of the champion's layout (YOLO: 17 COCO points; BlazePose: 4).
    from deployments.models.keypoints import LAYOUTS

    registry = client.get("/v1/models").json()["registry"]["detector"]["versions"]
    layout = next(v for v in registry if v["version"] == champions["detector"])["keypoint_layout"]
    assert {k["name"] for k in persons[0]["keypoints"]} == set(LAYOUTS[layout])
    # The photo has no printed text: whatever OCR reports passed the pipeline's confidence
    # floor (inspect: min_confidence 0.5) and lies inside the 512x512 image.
    for line in body["result"]["text"]:
        assert line["confidence"] >= 0.5 and line["text"], line
        bx1, by1, bx2, by2 = line["box"]
        assert 0 <= bx1 < bx2 <= 512 and 0 <= by1 < by2 <= 512, line


def test_ocr_reads_a_rendered_line(client: httpx.Client) -> None:
    img = encode(text_image(["RETURN 12345"]))
    r = client.post("/v1/pipelines/inspect", json={"image_base64": base64.b64encode(img).decode()})
    assert r.status_code == 200, r.text
    texts = [ln["text"] for ln in r.json()["result"]["text"]]
    assert any("RETURN 12345" in t.replace("  ", " ") for t in texts), texts
    assert r.json()["result"]["persons"] == []


def _pinned_answer(
    client: httpx.Client, platform_config: Any, model: str, version: int, image: bytes
) -> httpx.Response | None:
    """The version's answer to a pinned request, deploying its app first if it does not run:
    a rollout test that ran first (in any order) may have promoted another version and retired
    this one after its drain (which can still be due while this test runs)."""
    from model_registry.settings import RegistryRef
    from serving.cluster.versions import LocalVersionApps, binding

    apps = LocalVersionApps(platform_config)
    if version not in apps.running().get(model, []):
        apps.deploy(binding(platform_config, RegistryRef.from_env(), model, version))
    r = client.post(
        f"/v1/models/{model}:predict?version={version}",
        files={"image": ("a.png", image, "image/png")},
    )
    # The ingress sees a freshly deployed app within one reconcile interval.
    return r if r.status_code == 200 else None


def test_versions_side_by_side_answer_with_their_own_version(
    client: httpx.Client, store: Any, platform_config: Any
) -> None:
    img = encode(astronaut())
    out = {}
    for v in (1, 2):
        r = wait_for(
            lambda v=v: _pinned_answer(client, platform_config, "detector", v, img),
            timeout=90,
            what=f"detector v{v} answering a pinned request",
        )
        assert r.json()["version"] == v and _versions_header(r) == {"detector": v}
        out[v] = r.json()["result"]["detections"]
    assert out[1] and out[2]
    assert out[1] != out[2]  # two real, different models
    models = client.get("/v1/models").json()
    served = models["served"]["detector"]["versions"]
    assert served["1"]["version"] == 1 and served["2"]["version"] == 2
    assert served["1"]["artifact_dir"] != served["2"]["artifact_dir"]
    # The API reports the registry's alias (the source of truth), whichever version holds it.
    assert (
        models["registry"]["detector"]["aliases"]["champion"]
        == store.aliases("detector")["champion"]
    )


def test_pin_header_selects_version_for_the_whole_pipeline(client: httpx.Client) -> None:
    r = client.post(
        "/v1/pipelines/inspect",
        headers={"X-Model-Version": "detector=2,ocr=2"},
        files={"image": ("a.png", encode(text_image(["SKU 99812"])), "image/png")},
    )
    assert r.status_code == 200, r.text
    assert r.json()["model_versions"] == {"detector": 2, "ocr": 2}


def test_yaml_only_pipeline_is_served(client: httpx.Client) -> None:
    r = client.post(
        "/v1/pipelines/read_and_find",
        files={"image": ("t.png", encode(text_image(["RMA 4471"])), "image/png")},
    )
    assert r.status_code == 200, r.text
    assert set(r.json()["result"]) == {"lines", "people"}
    assert any("4471" in ln["text"] for ln in r.json()["result"]["lines"])


@pytest.mark.parametrize("moving,expected", [(True, "walking"), (False, "standing")])
def test_clip_tracks_and_classifies(
    client: httpx.Client, tmp_path: Path, moving: bool, expected: str
) -> None:
    video = video_bytes(person_clip(moving), tmp_path / "clip.avi")
    # Action v2 reads the champion detector's 17 keypoints (v1 consumes BlazePose's four, derived
    # from them only where hips and shoulders are seen: not on the astronaut's upper-body photo).
    r = client.post(
        "/v1/pipelines/clip",
        files={"video": ("clip.avi", video, "video/x-msvideo")},
        headers=ACTION_V2,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["input"]["clip"]["frames"] == 16
    tracks = body["result"]["tracks"]
    assert len(tracks) >= 1 and tracks[0]["length"] >= 12, tracks
    actions = {a["track_id"]: a for a in body["result"]["actions"]}
    main = max(tracks, key=lambda t: t["length"])
    assert actions[main["track_id"]]["label"] == expected, actions
    # Calibrated: a probability, not a certainty.
    assert 0.5 <= actions[main["track_id"]]["confidence"] < 0.99, actions
    champions = _champions(client)
    assert body["model_versions"] == {"detector": champions["detector"], "action": 2}


def test_clip_as_frames_and_alerts(client: httpx.Client) -> None:
    frames = person_clip(True, frames=10)
    files = [
        ("frames", (f"{i}.jpg", encode(f, ".jpg"), "image/jpeg")) for i, f in enumerate(frames)
    ]
    r = client.post("/v1/pipelines/clip", files=files, data={"fps": "10"}, headers=ACTION_V2)
    assert r.status_code == 200, r.text
    assert r.json()["input"]["clip"]["frames"] == 10
    result = r.json()["result"]
    main = max(result["tracks"], key=lambda t: t["length"])["track_id"]
    actions = {a["track_id"]: a for a in result["actions"]}
    assert actions[main]["label"] == "walking", result["actions"]
    # `clip` alerts only on reaching and crouching: the walker raises none (a short spurious
    # track may be called anything; then its alert still names only those two).
    assert main not in {a["track_id"] for a in result["alerts"]}, result["alerts"]
    for alert in result["alerts"]:
        assert alert["action"] in {"reaching", "crouching"}, alert
        assert actions[alert["track_id"]]["label"] == alert["action"], alert
    # `watch` is the same graph alerting on walking (tests/integration/conftest.py): it does.
    r = client.post("/v1/pipelines/watch", files=files, data={"fps": "10"}, headers=ACTION_V2)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    walkers = {
        a["track_id"]
        for a in result["actions"]
        if a["label"] == "walking" and a["confidence"] >= 0.3
    }
    alerts = result["alerts"]
    assert alerts and {a["track_id"] for a in alerts} == walkers, (alerts, result["actions"])
    for alert in alerts:
        assert alert["action"] == "walking" and alert["confidence"] >= 0.3, alert
        assert base64.b64decode(alert["snapshot_jpeg_base64"])[:2] == b"\xff\xd8"


def test_batching_really_batches(client: httpx.Client, base_url: str) -> None:
    img = encode(astronaut())

    def one(_: int) -> int:
        with httpx.Client(base_url=base_url, timeout=120) as c:
            return c.post(
                "/v1/models/detector:predict?version=2",
                files={"image": ("a.png", img, "image/png")},
            ).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(24))) == {200}
    # A clip fans its frames out to the detector at once: they arrive as one batch.
    frames = [
        ("frames", (f"{i}.jpg", encode(f, ".jpg"), "image/jpeg"))
        for i, f in enumerate(person_clip(True, frames=12))
    ]
    r = client.post("/v1/pipelines/clip", files=frames, headers={"X-Model-Version": "detector=2"})
    assert r.status_code == 200 and r.json()["model_versions"]["detector"] == 2
    info = client.get("/v1/models").json()["served"]["detector"]["versions"]["2"]
    assert info["max_batch_size_seen"] > 1, info
    # One ORT call per batch: the model ran fewer sessions than it served items.
    assert info["ort_calls"] == info["batches"] < info["items"], info


def test_runtime_reported(client: httpx.Client) -> None:
    info = client.get("/v1/models").json()["served"]["ocr"]["versions"]["1"]
    assert info["runtime"]["provider"] == "CPUExecutionProvider"


def test_metrics_aggregate_replicas(client: httpx.Client) -> None:
    champion = _champions(client)["detector"]
    r = client.post("/v1/models/detector:predict", files={"image": ("a.png", encode(astronaut()))})
    assert r.status_code == 200, r.text

    def scraped() -> str | None:
        # Wait for this route's own series: other routes' series may be exported first.
        text = client.get("/metrics").text
        ok = any(
            "canaryserve_request_latency_seconds_bucket" in line
            and 'route="model:detector"' in line
            for line in text.splitlines()
        ) and any(
            "canaryserve_inference_latency_seconds_bucket" in line
            and 'model="detector"' in line
            and f'version="{champion}"' in line
            for line in text.splitlines()
        )
        return text if ok else None

    wait_for(scraped, timeout=60, interval=2, what="this route's series in the metrics export")


def test_cli_predict_against_the_running_platform(base_url: str, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from serving.cli import app

    image = tmp_path / "form.png"
    image.write_bytes(encode(text_image(["RMA 4471"])))
    result = CliRunner().invoke(
        app, ["predict", str(image), "--pipeline", "inspect", "--url", base_url, "--pin", "ocr=2"]
    )
    assert result.exit_code == 0, result.output
    # Ray's log monitor may print into the captured stdout after the JSON: read the JSON only.
    body, _ = json.JSONDecoder().raw_decode(result.output[result.output.index("{") :])
    champion = httpx.get(f"{base_url}/v1/models").json()["registry"]["detector"]["aliases"]
    assert body["model_versions"] == {"detector": champion["champion"], "ocr": 2}
    assert any("4471" in line["text"] for line in body["result"]["text"])
