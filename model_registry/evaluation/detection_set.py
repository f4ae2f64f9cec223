"""The person-detection evaluation set: real photos and composites with known truth boxes.

Why it exists: the ``detector`` versions are converted or exported, never trained here, so
nothing in their manifests says how well they find people. This set says it the same way for
every detection version (BlazePose, tiled BlazePose, YOLO-pose, ...): images, truth boxes and
tags, scored by :mod:`model_registry.evaluation.detection_metrics`.

How it was made
---------------
* **Source photos** (from the scikit-image wheel): ``astronaut()`` and ``camera()``, one person
  each. Their truth boxes were drawn *by eye, once* (``data/person_boxes.json``, with a note):
  the photo rendered at 1.5x with a 50 px grid, the box written down, drawn on the photo and
  looked at again until tight. No truth box comes from a detector.
* **No-person photos**: ``coffee()``, ``chelsea()`` (a cat), ``rocket()`` (a launch pad) and
  ``brick()``: any detection on them is a false positive.
* **Composites** (:data:`SCENES`, 640x480): each person is a *sprite* cut from a source photo
  at its truth box, either the plain rectangle (``crop``) or with a GrabCut mask (``cutout``;
  fixed hints below, ``cv2.setRNGSeed(0)``, run at half resolution so the set builds in about a
  second), scaled to a given height, optionally mirrored, and pasted with its top-left corner at
  a given position on a real background (``rocket``, ``grass``, ``gravel``, ``brick``) scaled to
  cover the canvas. Its truth box is the sprite's rectangle on the canvas (the source truth box
  mapped through scale and offset), clipped to the canvas. Later sprites occlude earlier ones.

Tags: a box is ``small`` when it is at most :data:`SMALL_MAX_HEIGHT` px tall, ``overlap`` when
its intersection with another truth box of the image is at least :data:`OVERLAP_MIN` of the
*smaller* of the two boxes (:func:`intersection_over_smaller`). The scenes *declare* their
tags; the unit tests check the geometry agrees. An image is ``single``, ``multi`` or
``no_person`` by its number of people, and carries the union of its boxes' tags.

``data/detection_set.json`` is the set's manifest (spec and truth of every item), written by
``python -m model_registry.evaluation.detection_set``; a test checks it matches the code. The
pixels are regenerated at use time (cached per process); :attr:`DetectionSet.sha256` hashes
pixels and truth, so an evaluation run records exactly which set it scored.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Box = tuple[float, float, float, float]
DATA_DIR = Path(__file__).resolve().parent / "data"
SOURCE_BOXES_FILE = DATA_DIR / "person_boxes.json"
MANIFEST_FILE = DATA_DIR / "detection_set.json"
FORMAT = 1
WIDTH, HEIGHT = 640, 480
SMALL_MAX_HEIGHT = 80
OVERLAP_MIN = 0.3
PERSON_PHOTOS = ("astronaut", "camera")
NO_PERSON_PHOTOS = ("coffee", "chelsea", "rocket", "brick")

# GrabCut hints in the source photo's pixels, inside its truth box (everything outside the
# truth box is background): sure-person boxes, sure-background boxes. Found by looking.
_HINTS: dict[str, tuple[list[Box], list[Box]]] = {
    "astronaut": (
        [(170, 60, 280, 170), (120, 200, 320, 340), (50, 340, 270, 500)],
        [(20, 18, 140, 190), (310, 18, 362, 200), (300, 360, 362, 512)],  # wall, wall, helmet
    ),
    "camera": (
        [(170, 80, 250, 180), (40, 200, 200, 420), (300, 180, 325, 210)],  # head, coat, glove
        [(0, 63, 100, 150), (280, 63, 332, 130), (160, 330, 332, 512)],  # sky, sky, grass
    ),
}


@dataclass(frozen=True)
class Person:
    """One pasted person: ``height`` px tall, top-left corner at (x, y) on the canvas."""

    source: str  # astronaut | camera
    cut: str  # cutout (GrabCut mask) | crop (the rectangle of the photo)
    height: int
    x: int
    y: int
    flip: bool = False
    tags: tuple[str, ...] = ()  # declared: small, overlap


@dataclass(frozen=True)
class Scene:
    name: str
    background: str
    persons: tuple[Person, ...]
    note: str = ""


def _p(
    source: str, cut: str, height: int, x: int, y: int, *tags: str, flip: bool = False
) -> Person:
    return Person(source, cut, height, x, y, flip, tags)


SCENES: tuple[Scene, ...] = (
    Scene("grid-2x2-astronaut", "rocket", (
        _p("astronaut", "crop", 230, 80, 5), _p("astronaut", "crop", 230, 400, 5),
        _p("astronaut", "crop", 230, 80, 245), _p("astronaut", "crop", 230, 400, 245),
    ), "four mid-size people, one per quadrant: what tiling is for"),
    Scene("crowd-mixed", "gravel", (
        _p("camera", "cutout", 360, 20, 110), _p("astronaut", "cutout", 200, 300, 270),
        _p("astronaut", "crop", 130, 470, 60), _p("camera", "cutout", 90, 560, 370, flip=True),
    ), "a plain multi-person scene, four people from 90 to 360 px"),
    Scene("small-row", "grass", (
        _p("astronaut", "cutout", 80, 40, 320, "small"),
        _p("camera", "cutout", 72, 160, 328, "small"),
        _p("astronaut", "crop", 64, 280, 336, "small"), _p("camera", "crop", 56, 400, 344, "small"),
        _p("astronaut", "cutout", 48, 520, 352, "small", flip=True),
    ), "five people 48-80 px tall in a row"),
    Scene("small-and-large", "rocket", (
        _p("astronaut", "crop", 300, 30, 150), _p("camera", "cutout", 80, 330, 300, "small"),
        _p("camera", "cutout", 70, 430, 320, "small", flip=True),
        _p("astronaut", "crop", 60, 540, 330, "small"),
    ), "one large person and three small ones"),
    Scene("single-camera-rocket", "rocket", (
        _p("camera", "cutout", 400, 180, 60),
    ), "one cut-out on a new background"),
    Scene("overlap-camera-pair", "grass", (
        _p("camera", "cutout", 340, 40, 120, "overlap"),
        _p("camera", "cutout", 300, 200, 150, "overlap", flip=True),
    ), "the same man twice, the nearer one in front"),
    Scene("overlap-astronaut-camera", "gravel", (
        _p("astronaut", "cutout", 320, 300, 140, "overlap"),
        _p("camera", "cutout", 360, 150, 100, "overlap"),
    ), "the cameraman beside the astronaut, pasted after her: his glove and camera cover her"),
    Scene("overlap-astronaut-pair", "brick", (
        _p("astronaut", "crop", 260, 60, 160, "overlap"),
        _p("astronaut", "crop", 240, 180, 200, "overlap", flip=True),
    ), "two rectangles of the astronaut photo, the second covering a third of the first"),
)  # fmt: skip


@dataclass(frozen=True)
class Item:
    """One image of the set and its truth (``box_tags[i]`` belongs to ``boxes[i]``)."""

    name: str
    image: np.ndarray = field(repr=False, compare=False)
    boxes: tuple[Box, ...]
    box_tags: tuple[tuple[str, ...], ...]
    tags: tuple[str, ...]
    spec: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)


@dataclass(frozen=True)
class DetectionSet:
    items: tuple[Item, ...]
    sha256: str

    def manifest(self) -> dict[str, Any]:
        """What ``data/detection_set.json`` holds: spec, truth and tags of every item."""
        return {
            "format": FORMAT,
            "rules": {
                "box": "[x1, y1, x2, y2] in canvas pixels, x2/y2 exclusive",
                "small": f"box height <= {SMALL_MAX_HEIGHT} px",
                "overlap": f"intersection / area of the smaller box >= {OVERLAP_MIN} with another",
                "source_boxes": SOURCE_BOXES_FILE.name,
            },
            "items": [
                {
                    "name": it.name,
                    "size": [int(it.image.shape[1]), int(it.image.shape[0])],
                    "tags": list(it.tags),
                    "spec": it.spec,
                    "truth": [
                        {"box": [round(v, 2) for v in b], "tags": list(t)}
                        for b, t in zip(it.boxes, it.box_tags, strict=True)
                    ],
                }
                for it in self.items
            ],
        }


# --- geometry --------------------------------------------------------------------------------


def intersection(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def area(a: Box) -> float:
    return max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])


def intersection_over_smaller(a: Box, b: Box) -> float:
    """How much of the smaller box the other covers: the set's ``overlap`` measure."""
    smaller = min(area(a), area(b))
    return intersection(a, b) / smaller if smaller > 0 else 0.0


def pasted_box(person: Person, source_box: Box) -> tuple[Box, tuple[int, int]]:
    """(truth box on the canvas, clipped; sprite size (w, h)) of ``person``."""
    sw, sh = source_box[2] - source_box[0], source_box[3] - source_box[1]
    w, h = max(1, round(sw * person.height / sh)), person.height
    box = (
        float(min(max(person.x, 0), WIDTH)),
        float(min(max(person.y, 0), HEIGHT)),
        float(min(max(person.x + w, 0), WIDTH)),
        float(min(max(person.y + h, 0), HEIGHT)),
    )
    return box, (w, h)


# --- images ----------------------------------------------------------------------------------


def source_boxes(path: Path = SOURCE_BOXES_FILE) -> dict[str, Box]:
    """The by-eye truth box of each person photo."""
    data = json.loads(Path(path).read_text())
    out = {}
    for name in PERSON_PHOTOS:
        box = data[name]["box"]
        if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
            raise ValueError(f"{path}: {name} box {box!r} is not [x1, y1, x2, y2]")
        out[name] = tuple(float(v) for v in box)
    return out  # type: ignore[return-value]


@functools.cache
def photo(name: str) -> np.ndarray:
    """An ``skimage.data`` photo as HxWx3 uint8 RGB (grey photos repeated on 3 channels)."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    img = np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img[:, :, :3]
    img = np.ascontiguousarray(img, dtype=np.uint8)
    img.flags.writeable = False
    return img


def _background(name: str) -> np.ndarray:
    """The photo scaled to cover the canvas and centre-cropped."""
    import cv2

    img = photo(name)
    s = max(WIDTH / img.shape[1], HEIGHT / img.shape[0])
    img = cv2.resize(img, (math.ceil(img.shape[1] * s), math.ceil(img.shape[0] * s)))
    y, x = (img.shape[0] - HEIGHT) // 2, (img.shape[1] - WIDTH) // 2
    return np.ascontiguousarray(img[y : y + HEIGHT, x : x + WIDTH])


@functools.cache
def _mask(source: str, box: Box) -> np.ndarray:
    """GrabCut person mask (float alpha in [0, 1]) over the source truth box's rectangle."""
    import cv2

    img = photo(source)
    sure_fg, sure_bg = _HINTS[source]
    half = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    mask = np.full(half.shape[:2], cv2.GC_BGD, np.uint8)

    def fill(b: Box, value: int) -> None:
        x1, y1, x2, y2 = (int(v) // 2 for v in b)
        mask[y1:y2, x1:x2] = value

    fill(box, cv2.GC_PR_FGD)
    for b in sure_fg:
        fill(b, cv2.GC_FGD)
    for b in sure_bg:
        fill(b, cv2.GC_BGD)
    cv2.setRNGSeed(0)
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    bgr = cv2.cvtColor(half, cv2.COLOR_RGB2BGR)
    cv2.grabCut(bgr, mask, (0, 0, 0, 0), bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)
    full = cv2.resize(fg, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR) > 0.5
    x1, y1, x2, y2 = (int(v) for v in box)
    crop = full[y1:y2, x1:x2].astype(np.uint8)
    _, comp, stats, _ = cv2.connectedComponentsWithStats(crop)
    keep = (comp == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.float32)
    alpha = cv2.GaussianBlur(keep, (5, 5), 0)
    alpha.flags.writeable = False
    return alpha


def sprite(
    source: str, cut: str, size: tuple[int, int], flip: bool = False, box: Box | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A person from photo ``source`` at ``size`` (w, h): float32 RGB and its alpha in [0, 1].

    ``cut`` is ``cutout`` (the GrabCut mask) or ``crop`` (the whole truth rectangle); ``box``
    is the source truth box (default: :func:`source_boxes`)."""
    import cv2

    box = box if box is not None else source_boxes()[source]
    x1, y1, x2, y2 = (int(v) for v in box)
    pixels = photo(source)[y1:y2, x1:x2].astype(np.float32)
    mask = _mask(source, box) if cut == "cutout" else np.ones(pixels.shape[:2])
    interp = cv2.INTER_AREA if size[1] < pixels.shape[0] else cv2.INTER_LINEAR
    rgb: np.ndarray = cv2.resize(pixels, size, interpolation=interp)
    alpha: np.ndarray = cv2.resize(mask.astype(np.float32), size, interpolation=interp)
    if flip:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    return rgb, alpha


def _paste(canvas: np.ndarray, person: Person, box: Box, size: tuple[int, int]) -> None:
    rgb, alpha = sprite(person.source, person.cut, size, person.flip, box)
    w, h = size
    cx1, cy1 = max(person.x, 0), max(person.y, 0)
    cx2, cy2 = min(person.x + w, WIDTH), min(person.y + h, HEIGHT)
    if cx1 >= cx2 or cy1 >= cy2:
        raise ValueError(f"person {person!r} lies outside the {WIDTH}x{HEIGHT} canvas")
    sl = np.s_[cy1 - person.y : cy2 - person.y, cx1 - person.x : cx2 - person.x]
    a = alpha[sl][:, :, None]
    dst = canvas[cy1:cy2, cx1:cx2].astype(np.float32)
    canvas[cy1:cy2, cx1:cx2] = np.clip(a * rgb[sl] + (1 - a) * dst + 0.5, 0, 255).astype(np.uint8)


def _check_person(scene: str, p: Person) -> None:
    if p.source not in PERSON_PHOTOS:
        raise ValueError(f"scene {scene!r}: source {p.source!r} is not one of {PERSON_PHOTOS}")
    if p.cut not in ("cutout", "crop"):
        raise ValueError(f"scene {scene!r}: cut {p.cut!r} is not 'cutout' or 'crop'")
    if p.height < 8:
        raise ValueError(f"scene {scene!r}: height {p.height!r} is under 8 px")
    unknown = set(p.tags) - {"small", "overlap"}
    if unknown:
        raise ValueError(f"scene {scene!r}: unknown person tags {sorted(unknown)}")


def _image_tags(box_tags: list[tuple[str, ...]]) -> tuple[str, ...]:
    count = "no_person" if not box_tags else "single" if len(box_tags) == 1 else "multi"
    return tuple(sorted({count, *(t for tags in box_tags for t in tags)}))


def render_scene(scene: Scene, boxes: dict[str, Box]) -> Item:
    canvas = _background(scene.background)
    truth, tags = [], []
    for p in scene.persons:
        _check_person(scene.name, p)
        box, size = pasted_box(p, boxes[p.source])
        _paste(canvas, p, boxes[p.source], size)
        truth.append(box)
        tags.append(tuple(sorted(p.tags)))
    spec: dict[str, Any] = {"kind": "composite", "background": scene.background}
    spec["note"] = scene.note
    spec["persons"] = [{k: v for k, v in asdict(p).items() if k != "tags"} for p in scene.persons]
    canvas.flags.writeable = False
    return Item(scene.name, canvas, tuple(truth), tuple(tags), _image_tags(tags), spec)


def _photo_item(name: str, boxes: dict[str, Box]) -> Item:
    img = photo(name)
    truth = (boxes[name],) if name in boxes else ()
    tags: list[tuple[str, ...]] = [() for _ in truth]
    spec = {"kind": "photo", "photo": f"skimage.data.{name}()"}
    return Item(f"photo-{name}", img, truth, tuple(tags), _image_tags(tags), spec)


def build_set() -> DetectionSet:
    """Generate every item (about a second; deterministic: same bytes every run)."""
    boxes = source_boxes()
    items = [_photo_item(n, boxes) for n in (*PERSON_PHOTOS, *NO_PERSON_PHOTOS)]
    items += [render_scene(s, boxes) for s in SCENES]
    digest = hashlib.sha256()
    for it in items:
        digest.update(it.name.encode())
        digest.update(np.ascontiguousarray(it.image).tobytes())
        digest.update(json.dumps([it.boxes, it.box_tags]).encode())
    return DetectionSet(tuple(items), digest.hexdigest())


@functools.cache
def detection_set() -> DetectionSet:
    """The set, generated once per process."""
    return build_set()


def write_manifest(path: Path = MANIFEST_FILE) -> Path:
    """Write the manifest, one line per item so a diff shows which item changed."""
    data = detection_set().manifest()
    lines = [f' "{k}": {json.dumps(v)},' for k, v in data.items() if k != "items"]
    items = ",\n".join(f"  {json.dumps(it)}" for it in data["items"])
    Path(path).write_text("{\n" + "\n".join(lines) + '\n "items": [\n' + items + "\n ]\n}\n")
    return Path(path)


if __name__ == "__main__":
    print(write_manifest())
