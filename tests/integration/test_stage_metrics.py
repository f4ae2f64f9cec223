"""Where a request's time goes: the stage histograms on /metrics count every request and add up
to its end-to-end latency."""

from __future__ import annotations

import re
import time

import httpx

from serving.metric_specs import INGRESS_STAGES, REPLICA_STAGES
from tests.integration.conftest import wait_for
from tests.integration.media import astronaut, encode

N = 8
_LINE = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def _total(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (every node's export)."""
    total = 0.0
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None or m["name"] != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"]))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m["value"])
    return total


def _stages(text: str, champion: int) -> dict[str, tuple[float, float]]:
    """(count, sum) per stage of the detector route: ingress stages by route, replica stages
    by the champion's version, and ``e2e`` from the request latency."""
    stage = "ray_canaryserve_stage_seconds"
    out = {
        s: (
            _total(text, f"{stage}_count", stage=s, route="model:detector"),
            _total(text, f"{stage}_sum", stage=s, route="model:detector"),
        )
        for s in INGRESS_STAGES
    }
    for s in REPLICA_STAGES:
        # Any detector version: the one that answered is in each response, not asked here.
        labels = {"stage": s, "model": "detector"}
        out[s] = (_total(text, f"{stage}_count", **labels), _total(text, f"{stage}_sum", **labels))
    e2e = "ray_canaryserve_request_latency_seconds"
    labels = {"route": "model:detector", "status": "200"}
    out["e2e"] = (_total(text, f"{e2e}_count", **labels), _total(text, f"{e2e}_sum", **labels))
    return out


def test_every_stage_counts_each_request_and_the_stages_add_up(client: httpx.Client) -> None:
    registry = client.get("/v1/models").json()["registry"]
    champion = int(registry["detector"]["aliases"]["champion"])
    body = encode(astronaut(), ".jpg")
    # Warm-up: the series exist, and nothing else is still arriving at the export.
    assert client.post("/v1/models/detector:predict", files={"image": ("a.jpg", body)}).is_success

    def settled() -> dict[str, tuple[float, float]] | None:
        first = _stages(client.get("/metrics").text, champion)
        if first["e2e"][0] == 0 or any(c == 0 for c, _ in first.values()):
            return None
        time.sleep(11)
        again = _stages(client.get("/metrics").text, champion)
        return first if again == first else None

    # Two scrapes further apart than Ray's metrics export period (10 s): nothing still arriving.
    before = wait_for(settled, timeout=120, interval=12, what="the stage series")
    for _ in range(N):
        r = client.post("/v1/models/detector:predict", files={"image": ("a.jpg", body)})
        assert r.status_code == 200, r.text

    def counted() -> dict[str, tuple[float, float]] | None:
        now = _stages(client.get("/metrics").text, champion)
        counts = {s: now[s][0] - before[s][0] for s in now}
        # The ingress stages count exactly the requests the route answered (the warm-up too,
        # when its export landed after the first scrape); the replica's count every call of
        # the champion, which other callers of that version (probes, other routes) add to.
        ingress = {counts[s] for s in INGRESS_STAGES}
        replica = [counts[s] for s in REPLICA_STAGES]
        done = counts["e2e"] >= N and ingress == {counts["e2e"]}
        return now if done and min(replica) >= counts["e2e"] else None

    after = wait_for(counted, timeout=90, interval=2, what=f"{N} more requests in every stage")
    delta = {s: (after[s][0] - before[s][0], after[s][1] - before[s][1]) for s in after}
    assert delta["e2e"][0] >= N, delta  # more when earlier requests were exported late
    means = {s: total / count for s, (count, total) in delta.items()}
    stages = sum(v for s, v in means.items() if s != "e2e")
    # What no stage holds: routing, the gate, and Ray's transport between the two processes.
    assert 0.8 * means["e2e"] <= stages <= 1.2 * means["e2e"], means
