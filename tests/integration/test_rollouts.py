"""Canary rollouts end to end: real Serve deployments, real MLflow aliases, real HTTP traffic.

A promotion here moves `champion`: every test (here and in the other modules, which may run
before or after these in random order) reads the champion from the registry instead of assuming
one, and every rollout started here has ended when its test returns. A rollout that may promote
rolls out a rebuild of the champion (``rebuilt``), never another family: the champion's keypoint
layout, which the clip pipeline and the action versions pair with, stays what the config says.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.broken_models import raising, rebuilt, shifted_boxes
from tests.integration.conftest import wait_for
from tests.integration.media import astronaut, encode

# Each test starts once the ingress routes to the registry's champion (see conftest).
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("settled_champion")]
IMAGE = encode(astronaut())
TOLERANT_LATENCY = [
    {"name": "error_rate", "threshold": 0.05},
    {"name": "latency_p99_ratio", "threshold": 10.0},
    {"name": "shadow_agreement", "threshold": 0.8},
]
FAST = {"interval": "2s", "min_requests": 4, "threshold": 1, "progress_deadline": "90s"}


class Traffic:
    """Client threads posting to the `people` pipeline until stopped; every answer is kept."""

    def __init__(self, base_url: str, threads: int = 4) -> None:
        self.base_url = base_url
        self.statuses: Counter[int] = Counter()
        self.versions: Counter[int] = Counter()
        self.fallbacks = 0
        self.stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]
        self._lock = threading.Lock()

    def _run(self, i: int) -> None:
        rng = random.Random(i)
        with httpx.Client(base_url=self.base_url, timeout=120) as c:
            while not self.stop.is_set():
                r = c.post(
                    "/v1/pipelines/people",
                    files={"image": ("a.png", IMAGE, "image/png")},
                    headers={"X-Canary-Key": f"user-{rng.randrange(10_000)}"},
                )
                with self._lock:
                    self.statuses[r.status_code] += 1
                    if r.status_code == 200:
                        body = r.json()
                        self.versions[body["model_versions"]["detector"]] += 1
                        self.fallbacks += body["routing"]["detector"]["fallback"]

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=120)


def _start(client: httpx.Client, **spec: Any) -> dict[str, Any]:
    r = client.post("/v1/rollouts", json={**FAST, **spec})
    assert r.status_code == 201, r.text
    return r.json()


def _wait_state(
    client: httpx.Client, rid: str, states: set[str], timeout: float = 240
) -> dict[str, Any]:
    return wait_for(
        lambda: (lambda r: r if r["state"] in states else None)(
            client.get(f"/v1/rollouts/{rid}").json()
        ),
        timeout=timeout,
        interval=1,
        what=lambda: f"rollout {rid} in {states}: {client.get(f'/v1/rollouts/{rid}').json()}",
    )


def _summary(r: dict[str, Any]) -> str:
    """What a failing assertion should show: the end, and every check verdict on the way."""
    lines = [f"state={r['state']} reason={r.get('ended_reason')} weight={r.get('weight')}"]
    for e in r.get("events", []):
        results = e.get("detail", {}).get("results", [])
        checks = ", ".join(f"{c['name']}={c.get('value')}/{c.get('passed')}" for c in results)
        lines.append(f"  {e['kind']} {e['from_state']}->{e['to_state']} w={e['weight']} {checks}")
    return "\n".join(lines)


def _running_apps() -> set[str]:
    from ray import serve

    return set(serve.status().applications)


def _register_broken(store: Any, tmp_path: Path, make: Any, name: str) -> int:
    """A version made from the champion's files by ``make`` (broken, or an honest rebuild)."""
    src = store.resolve("detector@champion").path
    info = store.register(make(src, tmp_path / name), description=name)
    return int(info.version)


def test_good_challenger_is_promoted_through_every_step(
    client: httpx.Client, base_url: str, store: Any, tmp_path: Path
) -> None:
    champion = store.aliases("detector")["champion"]
    challenger = _register_rebuild(store, tmp_path, "rebuilt")
    with Traffic(base_url) as traffic:
        r = _start(
            client,
            model="detector",
            challenger_version=challenger,
            step_weights=[25, 50, 100],
            checks=TOLERANT_LATENCY,
        )
        assert store.aliases("detector")["challenger"] == challenger
        done = _wait_state(client, r["id"], {"promoted", "rolled_back", "aborted"})
    assert done["state"] == "promoted", _summary(done)
    steps = [e["weight"] for e in done["events"] if e["kind"] == "step"]
    assert steps == [25, 50, 100], done["events"]
    # The registry is the source of truth: champion moved, challenger cleared, old one tagged.
    assert store.aliases("detector") == {"champion": challenger}
    old = store.get(f"detector/{champion}")
    assert old.tags["canaryserve.replaced_by"] == str(challenger)
    assert r["id"] in old.tags["canaryserve.replaced_reason"]
    assert traffic.statuses.keys() == {200}, traffic.statuses
    assert traffic.versions[challenger] > 0 and traffic.versions[champion] > 0
    # The serving side follows the alias within a reconcile interval.
    wait_for(
        lambda: (
            client.post("/v1/pipelines/people", files={"image": ("a.png", IMAGE)}).json()[
                "model_versions"
            ]["detector"]
            == challenger
        ),
        timeout=30,
        what="ingress routes to the new champion",
    )


def test_raising_challenger_is_rolled_back_and_no_request_fails(
    client: httpx.Client, base_url: str, store: Any, tmp_path: Path
) -> None:
    version = _register_broken(store, tmp_path, raising, "raises")
    champion = store.aliases("detector")["champion"]
    with Traffic(base_url) as traffic:
        r = _start(client, model="detector", challenger_version=version, step_weights=[50, 100])
        done = _wait_state(client, r["id"], {"promoted", "rolled_back", "aborted"})
    assert done["state"] == "rolled_back", _summary(done)
    # Either check may see the raising challenger first; the next test pins the breaker down.
    assert done["ended_reason"] in {"error_rate", "circuit_breaker"}, done
    # Every client request succeeded: failed challenger calls were re-run on the champion.
    assert traffic.statuses.keys() == {200}, traffic.statuses
    assert traffic.fallbacks > 0
    assert traffic.versions.keys() == {champion}
    tags = store.get(f"detector/{version}").tags
    assert tags["canaryserve.rollback.check"] == done["ended_reason"]
    assert tags["canaryserve.rollback.rollout_id"] == r["id"]
    assert "challenger" not in store.aliases("detector")
    # The loser's replicas are drained.
    wait_for(
        lambda: f"detector-v{version}" not in _running_apps(), timeout=60, what="challenger retired"
    )


def test_with_error_rate_off_the_open_breaker_alone_rolls_a_raising_challenger_back(
    client: httpx.Client, base_url: str, store: Any, tmp_path: Path
) -> None:
    version = _register_broken(store, tmp_path, raising, "raises-breaker")
    champion = store.aliases("detector")["champion"]
    checks = [
        {"name": "error_rate", "threshold": 0.05, "enabled": False},
        {"name": "latency_p99_ratio", "threshold": 10.0, "enabled": False},
        {"name": "shadow_agreement", "threshold": 0.8, "enabled": False},
    ]
    with Traffic(base_url) as traffic:
        r = _start(
            client,
            model="detector",
            challenger_version=version,
            step_weights=[50, 100],
            checks=checks,
        )
        done = _wait_state(client, r["id"], {"promoted", "rolled_back", "aborted"})
    assert done["state"] == "rolled_back", _summary(done)
    assert done["ended_reason"] == "circuit_breaker", _summary(done)
    failed = [e for e in done["events"] if e["kind"] == "check_failed"]
    results = {c["name"]: c for c in failed[-1]["detail"]["results"]}
    assert (
        results["circuit_breaker"]["passed"] is False and results["circuit_breaker"]["value"] == 1
    )
    assert "error_rate" not in results  # it was off: the breaker alone decided
    assert traffic.statuses.keys() == {200}, traffic.statuses
    assert traffic.versions.keys() == {champion} and traffic.fallbacks > 0
    assert store.get(f"detector/{version}").tags["canaryserve.rollback.check"] == "circuit_breaker"


def test_wrong_boxes_are_caught_by_shadow_agreement(
    client: httpx.Client, base_url: str, store: Any, tmp_path: Path
) -> None:
    version = _register_broken(store, tmp_path, shifted_boxes, "shifted")
    champion = store.aliases("detector")["champion"]
    with Traffic(base_url) as traffic:
        r = _start(
            client,
            model="detector",
            challenger_version=version,
            mode="shadow-then-canary",
            shadow_share=1.0,
            step_weights=[50, 100],
        )
        done = _wait_state(client, r["id"], {"promoted", "rolled_back", "aborted"})
    assert done["state"] == "rolled_back", _summary(done)
    # Error rate and latency cannot see wrong boxes; only the shadow comparison can.
    assert done["ended_reason"] == "shadow_agreement", done
    failed = [e for e in done["events"] if e["kind"] == "check_failed"]
    results = {c["name"]: c for c in failed[-1]["detail"]["results"]}
    assert results["shadow_agreement"]["passed"] is False
    assert results["shadow_agreement"]["value"] < 0.5
    assert traffic.statuses.keys() == {200} and traffic.versions.keys() == {champion}
    tags = store.get(f"detector/{version}").tags
    assert tags["canaryserve.rollback.check"] == "shadow_agreement"
    assert float(tags["canaryserve.rollback.value"]) < 0.5


def test_shadow_records_agreement_without_changing_responses(
    client: httpx.Client, base_url: str, store: Any, tmp_path: Path
) -> None:
    champion = store.aliases("detector")["champion"]
    # The champion's boxes nudged by a few pixels, so the two versions answer differently; a
    # copy of the champion pairs with whichever action version is champion (BlazePose may not).
    other = _register_broken(
        store, tmp_path, lambda src, dest: shifted_boxes(src, dest, shift_px=12.0), "nudged"
    )
    with Traffic(base_url) as traffic:
        r = _start(
            client,
            model="detector",
            challenger_version=other,
            mode="shadow-then-canary",
            shadow_share=1.0,
            step_weights=[100],
            # Measured, not a gate: a failing window would end the shadow phase before it is
            # read. The test aborts at its first measured window, long before the shadow steps
            # run out.
            checks=[
                {"name": "error_rate", "threshold": 0.05},
                {"name": "shadow_agreement", "threshold": 0.0},
            ],
            interval="4s",
            shadow_steps=30,
        )
        rid = r["id"]

        def measured() -> dict[str, Any] | None:
            d = client.get(f"/v1/rollouts/{rid}").json()
            shadow = [c for c in d.get("last_results", []) if c["name"] == "shadow_agreement"]
            return (
                d if d["state"] == "shadow" and shadow and shadow[0]["value"] is not None else None
            )

        snapshot = wait_for(measured, timeout=180, interval=1, what="a measured shadow window")
        seen_during_shadow = dict(traffic.versions)
        # Every request carried the same photo, so the window's agreement is that of one pair
        # of answers, which the test computes itself from the two versions' pinned answers
        # (before the abort, which retires the challenger after the drain delay).
        expected = _agreement_on_the_photo(client, champion, other)
        client.post(f"/v1/rollouts/{rid}/abort", json={})
    value = next(c for c in snapshot["last_results"] if c["name"] == "shadow_agreement")["value"]
    assert value == pytest.approx(expected, abs=1e-6)
    # The dashboard's gauge shows the measured agreement too.
    wait_for(
        lambda: "canaryserve_shadow_agreement" in client.get("/metrics").text,
        timeout=60,
        what="the shadow agreement gauge in /metrics",
    )
    # While shadowing, every caller got the champion's answer.
    assert set(seen_during_shadow) == {champion}, seen_during_shadow
    assert traffic.statuses.keys() == {200}


def test_controller_restart_mid_rollout_resumes(
    client: httpx.Client, base_url: str, store: Any, tmp_path: Path
) -> None:
    import ray

    from serving.rollouts.controller.actor import get_controller

    other = _register_rebuild(store, tmp_path, "rebuilt-restart")  # it may promote
    with Traffic(base_url) as traffic:
        r = _start(
            client,
            model="detector",
            challenger_version=other,
            # The sequential error_rate needs ~80 clean challenger calls for its first pass:
            # a 25 % first step gets them in about a minute. Its evidence is saved with the
            # rollout, so the restarted controller goes on from it.
            step_weights=[25, 50, 75, 100],
            interval="3s",
            checks=TOLERANT_LATENCY,
        )
        rid = r["id"]
        before = wait_for(
            lambda: (lambda d: d if d["step_index"] >= 1 else None)(
                client.get(f"/v1/rollouts/{rid}").json()
            ),
            timeout=240,
            what="step 1 reached",
        )
        # What operations keep must outlive the controller: the audit trail and the metrics.
        served_before = _served_total(client)
        rid_before = _predict_request_id(client)
        old = get_controller()
        started_before = ray.get(old.ping.remote())["started_at"]
        ray.kill(old, no_restart=False)  # Ray restarts the actor; it reloads from SQLite

        def progressed() -> dict[str, Any] | None:
            d = client.get(f"/v1/rollouts/{rid}").json()
            ended = d.get("state") in {"promoted", "rolled_back", "aborted"}
            return d if ended or d.get("step_index", -1) > before["step_index"] else None

        after = wait_for(progressed, timeout=180, interval=1, what="progress after the restart")
        if after["state"] not in {"promoted", "rolled_back", "aborted"}:
            client.post(
                f"/v1/rollouts/{rid}/abort", json={}
            )  # before any check can fail: later tests
        started_after = ray.get(get_controller().ping.remote())["started_at"]
        assert started_after > started_before  # a new controller process did this
        rid_after = _predict_request_id(client)
        for request_id in (rid_before, rid_after):
            wait_for(
                lambda request_id=request_id: (
                    client.get(f"/v1/audit/{request_id}").status_code == 200
                ),
                timeout=30,
                what=f"audit record {request_id}",
            )
        # Counters kept counting across the restart (never reset, never lost).
        wait_for(
            lambda: _served_total(client) >= served_before + 2,
            timeout=60,
            interval=2,
            what="request counters past their pre-restart value",
        )
        # The rollout's start, audited before the restart, is still in the trail.
        admin = client.get("/v1/audit", params={"limit": 1000}).json()["admin"]
        assert any(a["action"] == "rollout.start" and a["target"] == rid for a in admin), admin[:5]
    assert after["state"] in {"progressing", "promoted"}, _summary(after)
    # The sequential evidence outlived the controller: restored, not reset.
    counted = [d["evidence"]["error_rate"]["challenger_requests"] for d in (before, after)]
    assert 0 < counted[0] <= counted[1], counted
    # It went on from where it was, not from the first step.
    steps = [e["weight"] for e in after["events"] if e["kind"] == "step"]
    assert steps == sorted(steps) and len(steps) == len(set(steps)), steps
    assert len(steps) > before["step_index"] + 1, _summary(after)
    assert traffic.statuses.keys() == {200}


def test_second_rollout_on_same_model_is_refused(
    client: httpx.Client, store: Any, tmp_path: Path
) -> None:
    other = _register_broken(store, tmp_path, rebuilt, "rebuilt-twice")  # aborted, never promoted
    r = _start(
        client, model="detector", challenger_version=other, interval="60s", checks=TOLERANT_LATENCY
    )
    try:
        again = client.post("/v1/rollouts", json={"model": "detector", "challenger_version": other})
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "rollout_conflict"
        assert r["id"] in again.json()["error"]["message"]
        _wait_state(client, r["id"], {"progressing"}, timeout=120)  # challenger ready
        paused = client.post(f"/v1/rollouts/{r['id']}/pause", json={}).json()
        assert paused["state"] == "paused"
        bad = client.post(f"/v1/rollouts/{r['id']}/pause", json={})
        assert (
            bad.status_code == 409 and bad.json()["error"]["code"] == "invalid_rollout_transition"
        )
    finally:
        assert client.post(f"/v1/rollouts/{r['id']}/abort", json={}).json()["state"] == "aborted"
    assert client.get("/v1/rollouts/nope").json()["error"]["code"] == "unknown_rollout"
    bad_spec = client.post("/v1/rollouts", json={"model": "detector", "challenger_version": 99})
    assert bad_spec.status_code == 404


def _register_rebuild(store: Any, tmp_path: Path, name: str) -> int:
    """A rebuild of the champion, registered as an engineer would (checked, with its drift
    reference frozen), so that promoting it leaves drift and the other tests a champion with a
    reference."""
    from model_registry.validate import register_checked

    src = store.resolve("detector@champion").path
    info = register_checked(store, rebuilt(src, tmp_path / name), description=name)
    return int(info.version)


def _agreement_on_the_photo(client: httpx.Client, champion: int, challenger: int) -> float:
    from deployments.types import Detection
    from serving.canary.compare import detection_agreement

    def people(version: int) -> list[Detection]:
        r = client.post(
            "/v1/pipelines/people",
            files={"image": ("a.png", IMAGE, "image/png")},
            headers={"X-Model-Version": f"detector={version}"},
        )
        assert r.status_code == 200, r.text
        return [
            Detection(box=tuple(p["box"]), score=p["score"], label=p["label"])
            for p in r.json()["result"]["people"]
        ]

    return detection_agreement(people(champion), people(challenger))


def _predict_request_id(client: httpx.Client) -> str:
    r = client.post("/v1/models/detector:predict", files={"image": ("a.png", IMAGE, "image/png")})
    assert r.status_code == 200, r.text
    return str(r.json()["request_id"])


def _served_total(client: httpx.Client) -> float:
    """Sum of the successful model:detector request counters scraped from /metrics."""
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if (
            "canaryserve_requests_total{" in line
            and 'route="model:detector"' in line
            and 'status="200"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total
