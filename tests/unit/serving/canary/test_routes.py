"""build_routes: the ingress's routes from aliases, running version apps and rollouts."""

from __future__ import annotations

from serving.canary import ModelRoute, RolloutRoute, build_routes


def _rollout(challenger: int = 2, champion: int = 1) -> RolloutRoute:
    return RolloutRoute(
        rollout_id="r1",
        champion=champion,
        challenger=challenger,
        weight=25.0,
        shadow_share=0.5,
        state="progressing",
    )


def test_the_champion_alias_routes_and_a_running_challenger_splits() -> None:
    routes = build_routes(
        ["detector", "ocr"],
        {},
        {"detector": {"champion": 1}, "ocr": {"champion": 4}},
        {"detector": [1, 2], "ocr": [4]},
        {"detector": _rollout()},
    )
    assert routes == {
        "detector": ModelRoute("detector", 1, 2, 25.0, 0.5, "r1"),
        "ocr": ModelRoute("ocr", 4),
    }


def test_an_alias_moved_to_a_version_not_yet_running_keeps_the_current_champion() -> None:
    current = {"detector": ModelRoute("detector", 2)}
    routes = build_routes(
        ["detector"], current, {"detector": {"champion": 3}}, {"detector": [1, 2]}, {}
    )
    assert routes == {"detector": ModelRoute("detector", 2)}  # not run[0], not the alias


def test_with_no_current_route_the_first_running_version_answers() -> None:
    routes = build_routes(["detector"], {}, {"detector": {"champion": 9}}, {"detector": [3, 4]}, {})
    assert routes == {"detector": ModelRoute("detector", 3)}


def test_a_model_with_no_alias_and_no_running_version_is_skipped_not_the_rest() -> None:
    routes = build_routes(
        ["action", "detector", "ocr"],
        {},
        {"detector": {"champion": 1}},  # no aliases at all for action or ocr
        {"detector": [1], "ocr": [5]},  # action runs nothing
        {},
    )
    assert routes == {"detector": ModelRoute("detector", 1), "ocr": ModelRoute("ocr", 5)}


def test_a_rollout_whose_challenger_is_not_running_or_is_the_champion_does_not_split() -> None:
    aliases = {"detector": {"champion": 1}}
    not_up = build_routes(["detector"], {}, aliases, {"detector": [1]}, {"detector": _rollout(2)})
    assert not_up == {"detector": ModelRoute("detector", 1)}
    same = build_routes(["detector"], {}, aliases, {"detector": [1, 2]}, {"detector": _rollout(1)})
    assert same == {"detector": ModelRoute("detector", 1)}
