"""A rollout's challenger must pair with the other models' champions on keypoints."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from serving.config import load_config
from serving.errors import InvalidRolloutSpec
from serving.rollouts.pairing import check_challenger_pairing

PIPELINES = load_config().pipelines  # clip: detector -> tracks -> action (derives blazepose4)


class Registry:
    """Champions and the keypoint layout of each version, as the MLflow tags record them."""

    def __init__(self, layouts: dict[str, dict[int, str]], champions: dict[str, int]) -> None:
        self.layouts, self.champions = layouts, champions

    def aliases(self, name: str) -> dict[str, int]:
        return {"champion": self.champions[name]} if name in self.champions else {}

    def get(self, ref: str) -> Any:
        name, version = ref.split("/")
        layout = self.layouts.get(name, {}).get(int(version))
        return SimpleNamespace(tags={"canaryserve.keypoint_layout": layout} if layout else {})


LAYOUTS = {
    "detector": {1: "blazepose4", 3: "coco17"},
    "action": {1: "blazepose4", 2: "coco17"},
    "ocr": {},
}


def test_a_blazepose_detector_cannot_challenge_under_a_coco_action() -> None:
    registry = Registry(LAYOUTS, {"detector": 3, "action": 2, "ocr": 1})
    with pytest.raises(InvalidRolloutSpec, match="action v2 consumes 'coco17' keypoints") as e:
        check_challenger_pairing(PIPELINES, registry, "detector", 1)  # type: ignore[arg-type]
    assert e.value.details == {"model": "detector", "version": 1}


def test_pairs_the_clip_pipeline_can_serve_are_accepted() -> None:
    registry = Registry(LAYOUTS, {"detector": 3, "action": 1, "ocr": 1})
    # coco17 detector + blazepose4 action: clip derives blazepose4 from coco17.
    check_challenger_pairing(PIPELINES, registry, "action", 1)  # type: ignore[arg-type]
    check_challenger_pairing(PIPELINES, registry, "action", 2)  # type: ignore[arg-type]
    # A model no pipeline pairs by keypoints (ocr) is never refused.
    check_challenger_pairing(PIPELINES, registry, "ocr", 2)  # type: ignore[arg-type]
    # A coco17 action under a BlazePose champion detector: refused.
    with pytest.raises(InvalidRolloutSpec, match="detector v1 reports 'blazepose4'"):
        check_challenger_pairing(  # type: ignore[arg-type]
            PIPELINES, Registry(LAYOUTS, {"detector": 1, "action": 1}), "action", 2
        )


def test_the_manager_refuses_an_unpaired_challenger_before_deploying_it(
    setup, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from serving.rollouts import manager as manager_module
    from serving.rollouts.manager import RolloutManager
    from tests.unit.serving.rollouts.conftest import SPEC

    manager, store, deployer, _clock = setup
    asked: list[tuple[object, ...]] = []

    def refuse(*args: object) -> None:
        asked.append(args)
        raise InvalidRolloutSpec("layouts differ")

    monkeypatch.setattr(manager_module, "check_challenger_pairing", refuse)
    manager.start(SPEC)  # no pipelines given: not checked
    assert asked == []
    manager.abort(manager.list(active_only=True)[0]["id"])
    manager = RolloutManager(
        manager.store, store, deployer, clock=_clock, drain_delay_s=5, pipelines=PIPELINES
    )
    deployer.ensured.clear()
    with pytest.raises(InvalidRolloutSpec, match="layouts differ"):
        manager.start(SPEC)
    assert asked == [(PIPELINES, store, "detector", 2)]
    assert manager.list(active_only=True) == [] and deployer.ensured == []
    assert "challenger" not in store.aliases("detector")
