"""Scoring person detections against the evaluation set's truth boxes.

Matching is the usual greedy one: predictions in descending score order, each takes the
unmatched truth box it overlaps most if that IoU is at least :data:`IOU_MIN` (0.5); a truth box
is found at most once, so a double detection counts once and its second box is a false
positive. What a detection is matched *by* is its person region (:func:`person_region`): the
``body_box`` where the detector gives one, else ``box``. BlazePose's ``box`` is the head and
upper chest and its ``body_box`` the full-body square, so comparing ``box`` with a whole-person
truth box would call every BlazePose hit a miss; YOLO-pose's ``box`` is the person.

Measured on this set, BlazePose's full-body square does not localise people either: it is a
square around the *predicted* hip, so for a narrow standing person or an upper-body crop it is
far wider (and often taller) than the person, and its IoU with the truth is 0.2-0.45 even when
its head box sits on the right face. So a second, *loose* rule is reported next to the strict
one: a prediction hits a truth box when at least half of its ``box`` lies inside it
(:func:`inside_fraction`), greedy in the same way. Strict numbers say whether a detector gives
person boxes; loose ones whether it finds the people at all. Recall and precision (the ones
logged and ranked) are the strict ones.

Everything here is plain arithmetic on boxes, so tests build the cases by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from deployments.types import Detection
from model_registry.evaluation.detection_set import Box, area, intersection

IOU_MIN = 0.5
SUBSETS = ("small", "overlap")


def iou(a: Box, b: Box) -> float:
    inter = intersection(a, b)
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def inside_fraction(pred: Box, truth: Box) -> float:
    """The share of ``pred``'s area that lies inside ``truth`` (the loose rule)."""
    a = area(pred)
    return intersection(pred, truth) / a if a > 0 else 0.0


def person_region(det: Detection) -> Box:
    """The box a detection is judged by: the full-body region if given, else the box."""
    return det.body_box if det.body_box is not None else det.box


def match(
    predictions: Sequence[tuple[Box, float]],
    truth: Sequence[Box],
    iou_min: float = IOU_MIN,
    measure: Callable[[Box, Box], float] = iou,
) -> list[int | None]:
    """For each prediction (box, score), the index of the truth box it found, or None (a false
    positive). Greedy by descending score (ties keep input order): each takes the free truth box
    with the highest ``measure`` if that is >= ``iou_min``; one truth per prediction."""
    order = sorted(range(len(predictions)), key=lambda k: -predictions[k][1])
    taken: set[int] = set()
    out: list[int | None] = [None] * len(predictions)
    for k in order:
        box = predictions[k][0]
        best, best_iou = None, iou_min
        for t, truth_box in enumerate(truth):
            if t in taken:
                continue
            value = measure(box, truth_box)
            if value >= best_iou and (best is None or value > best_iou):
                best, best_iou = t, value
        if best is not None:
            taken.add(best)
            out[k] = best
    return out


@dataclass(frozen=True)
class ImageScore:
    name: str
    tags: tuple[str, ...]
    truth: int  # persons in the truth
    found: tuple[int, ...]  # indices of the truth boxes found
    predictions: int
    false_positives: int
    found_loose: int  # truth boxes hit under the loose rule
    false_positives_loose: int
    found_by_tag: dict[str, tuple[int, int]]  # tag -> (found, truth) over boxes with that tag
    ms: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tags": list(self.tags),
            "truth": self.truth,
            "found": len(self.found),
            "predictions": self.predictions,
            "false_positives": self.false_positives,
            "found_loose": self.found_loose,
            "false_positives_loose": self.false_positives_loose,
            "ms": round(self.ms, 2),
        }


def score_image(
    name: str,
    tags: Sequence[str],
    truth: Sequence[Box],
    box_tags: Sequence[Sequence[str]],
    detections: Sequence[Detection],
    ms: float = 0.0,
) -> ImageScore:
    matched = match([(person_region(d), d.score) for d in detections], truth)
    found = tuple(sorted(t for t in matched if t is not None))
    loose = match([(d.box, d.score) for d in detections], truth, 0.5, inside_fraction)
    by_tag = {
        tag: (
            sum(1 for t in found if tag in box_tags[t]),
            sum(1 for bt in box_tags if tag in bt),
        )
        for tag in SUBSETS
    }
    return ImageScore(
        name=name,
        tags=tuple(tags),
        truth=len(truth),
        found=found,
        predictions=len(detections),
        false_positives=sum(1 for t in matched if t is None),
        found_loose=sum(1 for t in loose if t is not None),
        false_positives_loose=sum(1 for t in loose if t is None),
        found_by_tag=by_tag,
        ms=ms,
    )


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


@dataclass(frozen=True)
class SetScore:
    """Totals over a set. Precision is 0.0 when nothing was predicted (no evidence of it)."""

    images: tuple[ImageScore, ...]

    @property
    def truth(self) -> int:
        return sum(i.truth for i in self.images)

    @property
    def found(self) -> int:
        return sum(len(i.found) for i in self.images)

    @property
    def predictions(self) -> int:
        return sum(i.predictions for i in self.images)

    @property
    def recall(self) -> float:
        return _ratio(self.found, self.truth)

    @property
    def precision(self) -> float:
        return _ratio(self.found, self.predictions)

    @property
    def recall_loose(self) -> float:
        return _ratio(sum(i.found_loose for i in self.images), self.truth)

    @property
    def precision_loose(self) -> float:
        return _ratio(sum(i.found_loose for i in self.images), self.predictions)

    def subset_recall(self, tag: str) -> float:
        """Recall over the truth boxes tagged ``tag`` (``small``, ``overlap``)."""
        if tag not in SUBSETS:
            raise ValueError(f"subset {tag!r} is not one of {SUBSETS}")
        found = sum(i.found_by_tag[tag][0] for i in self.images)
        return _ratio(found, sum(i.found_by_tag[tag][1] for i in self.images))

    def image_recall(self, tag: str) -> float:
        """Recall over the images tagged ``tag`` (``single``, ``multi``, ...)."""
        chosen = [i for i in self.images if tag in i.tags]
        return _ratio(sum(len(i.found) for i in chosen), sum(i.truth for i in chosen))

    @property
    def false_positives_no_person(self) -> int:
        return sum(i.false_positives for i in self.images if "no_person" in i.tags)

    @property
    def ms_per_image(self) -> float:
        """Median over the images (the caller times them after a warm-up)."""
        times = sorted(i.ms for i in self.images)
        if not times:
            return 0.0
        mid = len(times) // 2
        return times[mid] if len(times) % 2 else (times[mid - 1] + times[mid]) / 2

    def metrics(self) -> dict[str, float]:
        return {
            "recall": round(self.recall, 4),
            "precision": round(self.precision, 4),
            "recall_small": round(self.subset_recall("small"), 4),
            "recall_overlap": round(self.subset_recall("overlap"), 4),
            "recall_single": round(self.image_recall("single"), 4),
            "recall_loose": round(self.recall_loose, 4),
            "precision_loose": round(self.precision_loose, 4),
            "fp_no_person": float(self.false_positives_no_person),
            "ms_per_image": round(self.ms_per_image, 2),
        }
