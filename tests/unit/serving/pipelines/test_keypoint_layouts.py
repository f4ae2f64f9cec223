"""Detector/action pairs must agree on keypoints, or the action node must derive them."""

from __future__ import annotations

import pytest

from deployments.models.keypoints import COCO17, derive, layout_points
from deployments.types import Detection, Keypoint
from serving.config import load_config
from serving.pipelines.spec import PipelineSpec, check_keypoint_layouts

CLIP = load_config().pipelines["clip"]


def _without_derivation(pipe: PipelineSpec) -> PipelineSpec:
    nodes = [
        n.model_copy(update={"params": {}}) if n.op == "classify_tracks" else n for n in pipe.nodes
    ]
    return pipe.model_copy(update={"nodes": nodes})


def test_yolo_detector_with_a_blazepose_action_needs_the_derivation() -> None:
    layouts = {"detector": {3: "coco17"}, "action": {1: "blazepose4", 2: "coco17"}}
    check_keypoint_layouts("clip", CLIP, layouts)  # the packaged clip derives blazepose4
    with pytest.raises(ValueError, match=r"action v1 consumes 'blazepose4' keypoints but "):
        check_keypoint_layouts("clip", _without_derivation(CLIP), layouts)


def test_a_blazepose_detector_cannot_feed_a_coco_action() -> None:
    # Seventeen points cannot be made from four: refused even with derive_keypoints.
    layouts = {"detector": {1: "blazepose4"}, "action": {2: "coco17"}}
    with pytest.raises(ValueError, match=r"detector v1 reports 'blazepose4'"):
        check_keypoint_layouts("clip", CLIP, layouts)
    check_keypoint_layouts(
        "clip", CLIP, {"detector": {1: "blazepose4"}, "action": {1: "blazepose4"}}
    )


def test_every_served_pair_is_judged_and_unknown_layouts_are_not() -> None:
    layouts = {"detector": {1: "blazepose4", 3: "coco17"}, "action": {2: "coco17"}}
    with pytest.raises(ValueError, match="detector v1"):
        check_keypoint_layouts("clip", CLIP, layouts)
    check_keypoint_layouts("clip", CLIP, {"detector": {1: None}, "action": {2: "coco17"}})


def _person(score: float = 0.9) -> Detection:
    """An upright COCO skeleton: head at y 10-20, shoulders 30, hips 60, ankles 100."""
    y = {"nose": 10, "eye": 12, "ear": 14, "shoulder": 30, "elbow": 45, "wrist": 58}
    y |= {"hip": 60, "knee": 80, "ankle": 100}
    points = []
    for name in COCO17:
        part = name.split("_")[-1]
        x = 40.0 if name.startswith("left") else 60.0 if name.startswith("right") else 50.0
        points.append(Keypoint(name, x, float(y[part]), score))
    return Detection(box=(35, 5, 65, 102), score=0.9, keypoints=tuple(points))


def test_blazepose_points_derived_from_coco_ones() -> None:
    det = derive(_person(), "coco17", "blazepose4")
    pts = layout_points(det, "blazepose4")
    assert pts is not None and layout_points(det, "coco17") is not None  # both kept
    assert (pts["mid_hip"].x, pts["mid_hip"].y) == (50.0, 60.0)
    assert (pts["mid_shoulder"].x, pts["mid_shoulder"].y) == (50.0, 30.0)
    # Circles point from hip to shoulder (up); the body circle reaches the farthest point
    # (the nose, 50 above mid-hip), the upper one the farthest head or arm point (a wrist,
    # hypot(10, 28) from mid-shoulder).
    assert (pts["full_body"].x, pts["full_body"].y) == pytest.approx((50.0, 10.0))
    assert pts["upper_body"].x == pytest.approx(50.0)
    assert pts["upper_body"].y == pytest.approx(30 - (10**2 + 28**2) ** 0.5)


def test_no_derivation_from_unseen_hips() -> None:
    det = _person(score=0.1)  # every point below the visibility threshold
    assert derive(det, "coco17", "blazepose4") is det
    with pytest.raises(ValueError, match="no derivation of keypoint layout 'coco17'"):
        derive(Detection(box=(0, 0, 9, 9), score=0.9), "blazepose4", "coco17")
