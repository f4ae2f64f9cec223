"""The per-request canary decisions that keep callers safe, each driven through the data plane
with real models and a challenger handle that fails, hangs or refuses."""

from __future__ import annotations

import asyncio
from typing import Any

from ray.exceptions import RayTaskError

from serving.canary import ModelRoute, RolloutRoute, build_routes
from serving.config import PlatformConfig
from serving.errors import InvalidInput
from tests.unit.serving.conftest import ModelHandle, PhotoInput, canary, ctx, make_plane

Handles = dict[tuple[str, int], ModelHandle]


def _photo() -> PhotoInput:
    from skimage import data

    return PhotoInput(data.astronaut())


def _calls(plane: Any) -> list[tuple[str | None, bool | None]]:
    return [(r.arm, r.ok) for r in plane.canary.take_records() if r.kind == "call"]


def test_an_open_breaker_sends_the_challengers_traffic_to_the_champion(
    config: PlatformConfig, handles: Handles
) -> None:
    plane = make_plane(config, handles, canary(weight=100))
    breaker = plane.canary.breakers.get("detector", 2)
    for _ in range(config.canary.breaker_failures):
        breaker.record_failure()
    outcome = asyncio.run(plane.pipeline(ctx(), "inspect", _photo()))
    assert outcome.error is None and outcome.versions["detector"] == 1
    assert handles[("detector", 2)].items == 0
    kinds = [r.kind for r in plane.canary.take_records()]
    assert "breaker" in kinds  # the controller hears of the open circuit (a failed check)


def test_a_hanging_challenger_times_out_and_the_champion_answers(
    config: PlatformConfig, handles: Handles
) -> None:
    handles[("detector", 2)].hang = True
    fast = config.model_copy(
        update={"canary": config.canary.model_copy(update={"challenger_timeout_s": 0.2})}
    )
    plane = make_plane(fast, handles, canary(weight=100))
    outcome = asyncio.run(plane.pipeline(ctx(), "inspect", _photo()))
    assert outcome.error is None and outcome.versions["detector"] == 1
    assert ("challenger", False) in _calls(plane)


def test_a_challenger_refusing_what_the_champion_takes_counts_as_its_failure(
    config: PlatformConfig, handles: Handles
) -> None:
    refused = RayTaskError("predict", "Traceback ...", InvalidInput("image 0 is too small"))
    handles[("detector", 2)].fail = refused
    plane = make_plane(config, handles, canary(weight=100))
    for _ in range(config.canary.breaker_failures):
        outcome = asyncio.run(plane.pipeline(ctx(), "inspect", _photo()))
        assert outcome.error is None and outcome.versions["detector"] == 1
    assert ("challenger", False) in _calls(plane)
    assert plane.canary.breakers.get("detector", 2).state == "open"


def test_the_shadow_cap_skips_mirrors_instead_of_queueing_them(
    config: PlatformConfig, handles: Handles
) -> None:
    capped = config.model_copy(
        update={"canary": config.canary.model_copy(update={"shadow_max_concurrency": 0})}
    )
    plane = make_plane(capped, handles, canary(weight=0, shadow_share=1.0))
    outcome = asyncio.run(plane.pipeline(ctx(), "inspect", _photo()))
    assert outcome.error is None
    assert plane.shadows.skipped == 1 and handles[("detector", 2)].items == 0


def test_a_failed_shadow_is_recorded_as_no_agreement(
    config: PlatformConfig, handles: Handles
) -> None:
    handles[("detector", 2)].fail = RuntimeError("down")

    async def serve() -> Any:
        plane = make_plane(config, handles, canary(weight=0, shadow_share=1.0))
        outcome = await plane.pipeline(ctx(), "inspect", _photo())
        await asyncio.gather(*plane.shadows._tasks)
        return plane, outcome

    plane, outcome = asyncio.run(serve())
    assert outcome.error is None and outcome.versions["detector"] == 1
    shadows = [r for r in plane.canary.take_records() if r.kind == "shadow"]
    assert [r.agreement for r in shadows] == [None]


def test_a_new_champion_whose_replicas_are_not_up_keeps_the_old_one_serving() -> None:
    current = {"detector": ModelRoute("detector", 1)}
    rollout = RolloutRoute(
        rollout_id="r", champion=1, challenger=2, weight=50, shadow_share=0, state="progressing"
    )
    moved = build_routes(
        ["detector"],
        current,
        {"detector": {"champion": 3}},
        {"detector": [1, 2]},
        {"detector": rollout},
    )
    assert moved["detector"].champion == 1 and moved["detector"].challenger == 2
    up = build_routes(
        ["detector"], current, {"detector": {"champion": 3}}, {"detector": [1, 3]}, {}
    )
    assert up["detector"].champion == 3 and up["detector"].challenger is None
