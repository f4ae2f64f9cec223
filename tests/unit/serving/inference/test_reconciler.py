"""The ingress's reconcile step (serving/inference/reconcile.py): Serve's status is asked only
when it may have changed."""

from __future__ import annotations

import asyncio

import pytest

from serving.canary import ModelRoute
from serving.canary.records import RolloutRecord
from serving.canary.routes import RolloutRoute
from serving.config import PlatformConfig
from serving.inference import reconcile
from serving.inference.reconcile import Reconciler
from serving.inference.routing import CanaryState


class _Controller:
    def __init__(self) -> None:
        self.rollouts: dict[str, RolloutRoute] = {}

    async def routes(self) -> dict[str, RolloutRoute]:
        return self.rollouts

    def report(self, records: list[RolloutRecord]) -> bool:
        return True


def _setup(config: PlatformConfig) -> tuple[Reconciler, CanaryState, _Controller, list[int]]:
    models = ("detector", "ocr", "action")
    state = CanaryState(config, {m: ModelRoute(m, 1) for m in models}, {m: [1] for m in models})
    apps = {"detector": [1], "ocr": [1], "action": [1]}
    calls: list[int] = []

    def running() -> dict[str, list[int]]:
        calls.append(1)
        return {m: list(v) for m, v in apps.items()}

    controller = _Controller()
    rec = Reconciler(state, lambda: {"detector": {"champion": 1}}, running, controller)
    rec.apps = apps  # type: ignore[attr-defined]
    return rec, state, controller, calls


def test_serve_status_is_asked_once_while_nothing_new_is_named(
    config: PlatformConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving import metrics

    exported: list[dict[str, object]] = []
    monkeypatch.setattr(metrics, "set_routes", lambda routes, states: exported.append(routes))
    rec, _, _, calls = _setup(config)
    for _ in range(3):
        asyncio.run(rec.reconcile())
    assert len(calls) == 1
    assert len(exported) == 3  # every reconcile exports the routes (canary weight, state)


def test_a_challenger_not_running_yet_is_looked_for_at_every_reconcile(
    config: PlatformConfig,
) -> None:
    rec, state, controller, calls = _setup(config)
    asyncio.run(rec.reconcile())
    controller.rollouts = {
        "detector": RolloutRoute(
            rollout_id="r1",
            champion=1,
            challenger=2,
            weight=10,
            shadow_share=0,
            state="progressing",
        )
    }
    asyncio.run(rec.reconcile())
    asyncio.run(rec.reconcile())
    assert len(calls) == 3  # v2's app is still starting: asked each time
    rec.apps["detector"] = [1, 2]  # type: ignore[attr-defined]
    asyncio.run(rec.reconcile())
    assert state.routes["detector"].challenger == 2
    asyncio.run(rec.reconcile())
    assert len(calls) == 4  # v2 runs now: the cached answer holds


def test_the_answer_is_refreshed_when_it_is_old(
    config: PlatformConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec, _, _, calls = _setup(config)
    monkeypatch.setattr(reconcile, "RUNNING_REFRESH_S", 0.0)
    asyncio.run(rec.reconcile())
    asyncio.run(rec.reconcile())
    assert len(calls) == 2
