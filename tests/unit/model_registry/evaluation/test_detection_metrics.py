"""Greedy matching and the per-subset scores, on hand-built boxes."""

from __future__ import annotations

import pytest

from deployments.types import Detection
from model_registry.evaluation.detection_metrics import (
    SetScore,
    iou,
    match,
    person_region,
    score_image,
)

TRUTH = (0.0, 0.0, 100.0, 100.0)


def det(box: tuple[float, float, float, float], score: float = 0.9, body: tuple | None = None):
    return Detection(box=box, score=score, body_box=body)


def test_iou_0_49_misses_and_0_5_matches() -> None:
    miss = (0.0, 0.0, 49.0, 100.0)  # 4900 / 10000
    hit = (0.0, 0.0, 50.0, 100.0)
    assert iou(miss, TRUTH) == pytest.approx(0.49)
    assert match([(miss, 0.9)], [TRUTH]) == [None]
    assert match([(hit, 0.9)], [TRUTH]) == [0]


def test_a_double_detection_counts_once_and_the_lower_score_is_the_false_positive() -> None:
    a, b = (0.0, 0.0, 100.0, 90.0), (0.0, 0.0, 100.0, 100.0)
    assert match([(a, 0.6), (b, 0.8)], [TRUTH]) == [None, 0]
    s = score_image("x", ("single",), [TRUTH], [()], [det(a, 0.6), det(b, 0.8)])
    assert (len(s.found), s.false_positives, s.predictions) == (1, 1, 2)


def test_a_prediction_takes_the_truth_it_overlaps_most() -> None:
    left, right = (0.0, 0.0, 100.0, 100.0), (20.0, 0.0, 120.0, 100.0)
    pred = (15.0, 0.0, 115.0, 100.0)  # IoU 0.74 with left, 0.90 with right
    assert iou(pred, right) > iou(pred, left) >= 0.5
    assert match([(pred, 0.9), ((0.0, 0.0, 95.0, 100.0), 0.5)], [left, right]) == [1, 0]


def test_the_region_is_the_body_box_where_there_is_one() -> None:
    head = (40.0, 0.0, 60.0, 20.0)
    assert person_region(det(head, body=TRUTH)) == TRUTH
    assert person_region(det(head)) == head
    strict = score_image("x", ("single",), [TRUTH], [()], [det(head)])
    assert (len(strict.found), strict.found_loose) == (0, 1)  # the loose rule: box inside


def test_set_score_per_subset_and_no_person_false_positives() -> None:
    small, big = (0.0, 0.0, 30.0, 60.0), (200.0, 0.0, 300.0, 200.0)
    images = (
        score_image("a", ("multi", "small"), [small, big], [("small",), ()], [det(big)], ms=10),
        score_image("b", ("no_person",), [], [], [det((0, 0, 5, 5))], ms=30),
        score_image("c", ("overlap", "multi"), [TRUTH, TRUTH], [("overlap",)] * 2, [det(TRUTH)],
                    ms=20),
    )  # fmt: skip
    s = SetScore(images)
    assert (s.truth, s.found, s.predictions) == (4, 2, 3)
    assert s.recall == 0.5 and s.precision == pytest.approx(2 / 3)
    assert s.subset_recall("small") == 0.0 and s.subset_recall("overlap") == 0.5
    assert s.false_positives_no_person == 1
    assert s.ms_per_image == 20
    assert s.metrics()["recall"] == 0.5
    with pytest.raises(ValueError, match="'tiny'"):
        s.subset_recall("tiny")


def test_nothing_predicted_is_precision_zero() -> None:
    s = SetScore((score_image("a", ("single",), [TRUTH], [()], []),))
    assert (s.recall, s.precision) == (0.0, 0.0)
