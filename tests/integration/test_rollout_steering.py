"""No caller steers a rollout from outside the split.

On main, five pinned requests with a 1x1 image opened the challenger's circuit breaker and the
``circuit_breaker`` check rolled it back; cheap pinned successes padded ``min_requests``. Here a
storm of pinned bad requests runs during a rollout at 25 % challenger weight and leaves its state
and breaker alone. As a positive control, the same kind of storm sent unpinned, with the
attacker's own ``X-Canary-Key``, does reach the challenger, and still counts at most
``max_requests_per_key`` times in a window.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from serving.canary.split import bucket
from tests.integration.broken_models import rebuilt
from tests.integration.conftest import wait_for
from tests.integration.media import encode
from tests.integration.test_rollouts import Traffic

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("settled_champion")]
TINY = encode(np.zeros((1, 1, 3), np.uint8))  # every detector version refuses it: 422
SMALL = encode(np.full((8, 8, 3), 90, np.uint8))  # a cheap success: no people, 200
PER_KEY = 3


def _key(rollout_id: str, to_challenger: bool) -> str:
    """A routing key the split sends to the challenger at 25 % (or to the champion up to
    40 %): buckets only move toward the challenger as the weight grows."""
    for i in range(10_000):
        key = f"mallory-{i}"
        b = bucket(rollout_id, key)
        if (b < 2500) if to_challenger else (b >= 4000):
            return key
    raise AssertionError("no key found")


def _windows(client: httpx.Client, rid: str, since: float) -> list[dict[str, Any]]:
    events = client.get(f"/v1/rollouts/{rid}").json()["events"]
    return [e for e in events if e["ts"] >= since and "samples" in e.get("detail", {})]


def test_a_storm_of_pinned_bad_requests_leaves_the_rollout_and_its_breaker_alone(
    client: httpx.Client, base_url: str, store: Any, tmp_path: Path
) -> None:
    src = store.resolve("detector@champion").path
    challenger = int(store.register(rebuilt(src, tmp_path / "steered")).version)
    spec = {
        "model": "detector",
        "challenger_version": challenger,
        "step_weights": [25, 30, 35, 40, 100],  # never promoted while the test runs
        "interval": "15s",
        "min_requests": 1,
        "threshold": 1,
        "max_requests_per_key": PER_KEY,
    }
    r = client.post("/v1/rollouts", json=spec)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    try:
        wait_for(
            lambda: client.get(f"/v1/rollouts/{rid}").json()["state"] == "progressing",
            timeout=180,
            what="the challenger serving at 25 %",
        )
        wait_for(  # and the ingress routing to it (within a reconcile interval)
            lambda: (
                client.get("/v1/models").json()["served"]["detector"]["challenger"] == challenger
            ),
            timeout=60,
            what="the ingress to route to the challenger",
        )
        # 1. Pinned: 40 bad requests for the challenger within seconds, honest traffic beside.
        started = time.time()
        with Traffic(base_url, threads=2) as traffic:
            pinned = [
                client.post(
                    "/v1/pipelines/people",
                    files={"image": ("x.png", TINY, "image/png")},
                    headers={"X-Model-Version": f"detector={challenger}"},
                )
                for _ in range(40)
            ]
            first = wait_for(
                lambda: _windows(client, rid, started), timeout=120, what="a window judged"
            )
            # Honest traffic stays on for 3 s of the window open now: a window short of either
            # arm's min_requests stays open (up to progress_deadline) and would take the storm
            # of step 2 in with it.
            opened = max(e["ts"] for e in _windows(client, rid, started))
            time.sleep(max(0.0, opened + 3.0 - time.time()))
        assert {p.status_code for p in pinned} == {422}
        assert {p.json()["error"]["code"] for p in pinned} == {"invalid_input"}
        # Served and audited as the challenger's answers ...
        audited = client.get(f"/v1/audit/{pinned[0].json()['request_id']}").json()
        assert audited["nodes"]["detector"]["version"] == challenger
        assert audited["nodes"]["detector"]["pinned"] is True
        # ... but no evidence: the breaker stayed closed and no check failed.
        d = client.get(f"/v1/rollouts/{rid}").json()
        assert d["state"] == "progressing", d
        assert not [e for e in d["events"] if e["kind"] in {"check_failed", "rolled_back"}], d
        window = first[0]["detail"]
        assert window["samples"]["circuit_open"] is False, window
        assert window["samples"]["challenger_errors"] == 0, window
        assert traffic.statuses.keys() == {200} and traffic.versions[challenger] > 0

        # 2. Positive control: the same storm unpinned, under the attacker's own key, which
        # the split sends to the challenger. It reaches the challenger (cheap successes now,
        # so that they would count), and counts at most PER_KEY times in the window. It runs
        # in a window of its own: the one open when the honest traffic stopped is judged first.
        stopped = time.time()
        since = wait_for(
            lambda: max((e["ts"] for e in _windows(client, rid, stopped)), default=None),
            timeout=60,
            what="the window of the honest traffic judged",
        )
        mallory, bystander = _key(rid, True), _key(rid, False)
        for _ in range(3):  # the champion's arm of the window (min_requests)
            client.post(
                "/v1/pipelines/people",
                files={"image": ("x.png", SMALL, "image/png")},
                headers={"X-Canary-Key": bystander},
            )
        unpinned = [
            client.post(
                "/v1/pipelines/people",
                files={"image": ("x.png", SMALL, "image/png")},
                headers={"X-Canary-Key": mallory},
            )
            for _ in range(30)
        ]
        assert {u.status_code for u in unpinned} == {200}
        assert {u.json()["model_versions"]["detector"] for u in unpinned} == {challenger}
        judged = wait_for(
            lambda: [e for e in _windows(client, rid, since) if e["ts"] > since],
            timeout=120,
            what="the storm's window judged",
        )
        samples = judged[0]["detail"]["samples"]
        assert samples["challenger_requests"] <= PER_KEY, judged[0]
    finally:
        client.post(f"/v1/rollouts/{rid}/abort", json={})
