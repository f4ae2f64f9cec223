"""The person-detection set: truth geometry, declared tags, determinism, committed manifest."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from model_registry.evaluation import detection_set as ds
from model_registry.evaluation.detection_set import (
    HEIGHT,
    MANIFEST_FILE,
    OVERLAP_MIN,
    SCENES,
    SMALL_MAX_HEIGHT,
    WIDTH,
    DetectionSet,
    Item,
    Person,
    build_set,
    detection_set,
    intersection_over_smaller,
    pasted_box,
    source_boxes,
)


@pytest.fixture(scope="module")
def items() -> dict[str, Item]:
    return {it.name: it for it in detection_set().items}


def _fresh() -> DetectionSet:
    """Built from nothing cached: photos, masks and the set itself regenerated."""
    ds.photo.cache_clear()
    ds._mask.cache_clear()
    return build_set()


def test_generation_is_deterministic_and_fast() -> None:
    detection_set()  # imports cv2/skimage once; what is timed is the generation
    start = time.perf_counter()
    a = _fresh()
    elapsed = time.perf_counter() - start
    b = _fresh()
    assert elapsed < 2.0, f"generating the set took {elapsed:.2f} s"
    assert a.sha256 == b.sha256
    for x, y in zip(a.items, b.items, strict=True):
        assert x.name == y.name and x.image.tobytes() == y.image.tobytes()
        assert x.boxes == y.boxes


def test_the_committed_manifest_is_what_the_code_builds() -> None:
    committed = json.loads(MANIFEST_FILE.read_text())
    assert committed == detection_set().manifest(), (
        "run `python -m model_registry.evaluation.detection_set` and commit the result"
    )


def test_the_set_has_the_subsets_it_promises(items: dict[str, Item]) -> None:
    assert 10 <= len(items) <= 16
    tagged = {tag: [n for n, it in items.items() if tag in it.tags] for tag in
              ("single", "multi", "no_person", "small", "overlap")}  # fmt: skip
    assert len(tagged["no_person"]) >= 2 and len(tagged["single"]) >= 3
    assert len(tagged["overlap"]) >= 2
    smalls = [t for it in items.values() for t in it.box_tags if "small" in t]
    assert len(smalls) >= 5
    # a plain multi-person scene of 3-5 people of mixed sizes, none small or overlapping
    plain = items["crowd-mixed"]
    heights = [b[3] - b[1] for b in plain.boxes]
    assert 3 <= len(heights) <= 5 and max(heights) >= 3 * min(heights)
    assert plain.tags == ("multi",)


def test_every_truth_box_is_inside_its_canvas(items: dict[str, Item]) -> None:
    for it in items.values():
        h, w = it.image.shape[:2]
        assert it.image.dtype == np.uint8 and it.image.shape[2] == 3
        for x1, y1, x2, y2 in it.boxes:
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h, (it.name, (x1, y1, x2, y2))


def test_declared_tags_agree_with_the_geometry(items: dict[str, Item]) -> None:
    """``small`` iff <= 80 px tall; ``overlap`` iff some other box covers >= 0.3 of the smaller."""
    for it in items.values():
        for k, (box, tags) in enumerate(zip(it.boxes, it.box_tags, strict=True)):
            height = box[3] - box[1]
            assert ("small" in tags) == (height <= SMALL_MAX_HEIGHT), (it.name, k, height)
            best = max(
                (intersection_over_smaller(box, o) for j, o in enumerate(it.boxes) if j != k),
                default=0.0,
            )
            assert ("overlap" in tags) == (best >= OVERLAP_MIN), (it.name, k, round(best, 3))


def test_truth_is_the_source_box_mapped_through_the_paste() -> None:
    src = source_boxes()
    assert src == {"astronaut": (20.0, 18.0, 362.0, 512.0), "camera": (0.0, 63.0, 332.0, 512.0)}
    # 342x494 scaled to 247 px tall is 171 wide; a paste across the right edge is clipped.
    box, size = pasted_box(Person("astronaut", "crop", 247, 500, 100), src["astronaut"])
    assert size == (171, 247) and box == (500.0, 100.0, float(WIDTH), 347.0)
    box, _ = pasted_box(Person("camera", "cutout", 100, -10, HEIGHT - 50), src["camera"])
    assert box == (0.0, HEIGHT - 50.0, 64.0, float(HEIGHT))


def test_a_pasted_person_changes_only_pixels_inside_its_box(items: dict[str, Item]) -> None:
    scene = next(s for s in SCENES if s.name == "single-camera-rocket")
    empty = ds._background(scene.background)
    it = items[scene.name]
    changed = np.any(it.image != empty, axis=2)
    x1, y1, x2, y2 = (int(v) for v in it.boxes[0])
    assert changed[y1:y2, x1:x2].mean() > 0.3  # the person is there...
    outside = changed.copy()
    outside[y1:y2, x1:x2] = False
    assert not outside.any()  # ...and nowhere else


def test_a_bad_spec_is_refused_with_its_value() -> None:
    with pytest.raises(ValueError, match="'dog'"):
        ds._check_person("s", Person("dog", "crop", 100, 0, 0))
    with pytest.raises(ValueError, match="'blob'"):
        ds._check_person("s", Person("camera", "blob", 100, 0, 0))
