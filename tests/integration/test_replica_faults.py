"""A model replica killed while requests flow: under 1 % errors, and the replica comes back.

The champion detector is redeployed with two replicas for this test (and back to one after).
One replica actor is killed with ``ray.kill`` mid-load: the calls it held are sent again to
the deployment (``serving.inference.routing.predict``), Serve's router sends new ones to the
survivor, and Serve's controller starts a replacement.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.integration.conftest import wait_for
from tests.integration.media import astronaut, encode

# Each test starts once the ingress routes to the registry's champion (see conftest).
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("settled_champion")]
IMAGE = encode(astronaut())


def _replicas(app: str) -> list[dict[str, Any]]:
    from ray.util import list_named_actors

    return [
        a
        for a in list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::{app}#")
    ]


def _running(app: str) -> int:
    from ray import serve

    status = serve.status().applications[app].deployments[app]
    return int(status.replica_states.get("RUNNING", 0))


def _served_by_replica(app: str, seen: dict[str, int]) -> dict[str, int]:
    """Items each replica of ``app`` has served, as far as asked: one ``info`` call lands on
    one replica, so callers poll until every replica they wait for has answered."""
    from ray import serve

    info = serve.get_app_handle(app).info.remote().result(timeout_s=30)
    seen[info["replica"]] = int(info["items"])
    return seen


def test_killing_a_replica_mid_load_loses_under_one_percent(
    base_url: str, client: httpx.Client, platform_config: Any, store: Any
) -> None:
    import ray

    from serving.app import plan_deployments
    from serving.cluster.versions import LocalVersionApps

    champion = store.aliases("detector")["champion"]
    binding = next(
        b
        for b in plan_deployments(platform_config, store).bindings
        if (b.name, b.version) == ("detector", champion)
    )
    app = binding.deployment_name
    spec = platform_config.models["detector"]
    two = platform_config.model_copy(
        update={
            "models": {
                **platform_config.models,
                "detector": spec.model_copy(
                    update={"deployment": spec.deployment.model_copy(update={"num_replicas": 2})}
                ),
            }
        }
    )
    LocalVersionApps(two).deploy(binding)
    try:
        wait_for(lambda: _running(app) == 2 and len(_replicas(app)) == 2, 120, what="2 replicas")
        before = {a["name"] for a in _replicas(app)}
        outcomes: Counter[str] = Counter()
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=base_url, timeout=60) as c:
                while not stop.is_set():
                    r = c.post(
                        "/v1/models/detector:predict",
                        files={"image": ("a.png", IMAGE, "image/png")},
                        headers={"X-Model-Version": f"detector={champion}"},
                    )
                    outcomes[
                        "ok" if r.status_code == 200 else f"{r.status_code} {r.text[:120]}"
                    ] += 1

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        # Both replicas busy: each has served some of the load (polled, not slept on).
        seen: dict[str, int] = {}
        wait_for(
            lambda: (
                {n for n, items in _served_by_replica(app, seen).items() if items > 0} >= before
            ),
            timeout=120,
            what=lambda: f"both replicas serving the load: {seen}",
        )
        victim = sorted(before)[0]
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        killed_at = outcomes.total()
        # The replacement: two RUNNING replicas again, one of them new.
        fresh = wait_for(
            lambda: _running(app) == 2 and {a["name"] for a in _replicas(app)} - before,
            timeout=180,
            what="a replacement replica",
        )

        # ... and it serves the load too.
        def replacement_serving() -> bool:
            _served_by_replica(app, seen)
            return any(seen.get(name, 0) > 0 for name in fresh)

        wait_for(
            replacement_serving,
            timeout=120,
            what=lambda: f"the replacement {fresh} serving: {seen}",
        )
        stop.set()
        for t in threads:
            t.join(timeout=120)
    finally:
        LocalVersionApps(platform_config).deploy(binding)

    total = outcomes.total()
    errors = {k: n for k, n in outcomes.items() if k != "ok"}
    print(f"replica kill: {total} requests, killed after {killed_at}, errors {errors}")
    # Load flowed through both replicas before the kill and through the replacement after.
    assert killed_at >= 2 and total > killed_at, outcomes
    assert sum(errors.values()) < 0.01 * total, (total, errors)
