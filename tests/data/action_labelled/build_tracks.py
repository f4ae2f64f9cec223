"""Build the hand-labelled action set's tracks from real photos, the real detector and tracker.

Why: the action model is trained and held-out-tested on one generator; these tracks are what
the *real* reference detectors (bootstrap's ``detector`` v1 and v2, BlazePose: four keypoints,
x/y, plus a body box; v3, YOLO11n-pose: 17 COCO keypoints with confidences, the box the whole
person) and the serving tracker report for short clips made from real photos, so scoring a
model on them (with labels given by looking at the clips, see ``labels.json``) is a judgement
the generator cannot bias.

The clips: a person cut out (GrabCut, fixed seeds) of ``skimage.data.astronaut()`` or
``camera()`` composited on a real background photo from the same wheel (``rocket``, the garage of
``motorcycle_left``, ``brick``, ``grass``, ``gravel``), 16 frames at 10 fps, 640x480:

* ``walk``: the cut-out slides left or right at 8-30 px/frame with a small step bob;
* ``stand``: it stays put, with a hand-held camera's jitter (the whole frame shifts 1-4 px);
* ``crouch``: partway through it moves down while its height squashes (feet leave the frame).

No ``reaching`` clip is made: a rigid photo cannot extend an arm, and a sheared upper body reads
as a lean, not a reach. The clip kinds are *how the clip was made*; the labels in
``labels.json`` are what the labeller saw on the contact sheets, and are kept where they differ.

This script lives under ``tests/`` because it imports the serving tracker, which the registry
package may not (import-linter); the format and the scoring are in
``model_registry.references.action_labelled``.

Regenerate and relabel
----------------------
``.venv/bin/python tests/data/action_labelled/build_tracks.py --sheets /tmp/action_sheets``
rewrites ``tracks.json`` next to this file (about 90 s on 2 cores for the three detectors; they
come from the bootstrap cache, ``.canaryserve/cache/models``, keyed ``detector-v1`` ... ``-v3``,
built there if absent: v3 in ~10 s once its wheel is cached) and renders *blind* contact sheets
into ``/tmp/action_sheets``: ``sheet-NN.png`` in a shuffled order with no clip or detector
names, one row of six frames per track (lettered A, B, ...), BlazePose tracks with their body
square (green) and head box (yellow), COCO tracks with their person box (green) and skeleton
(left limbs orange, right cyan, head white, points under confidence 0.3 as grey dots), the box
centres' path over all frames on the last frame; ``index.json`` there maps ``sheet-NN`` / letter
to the track key. ``--sheet-detectors detector-v3`` shows only that detector's tracks (label a
new detector without its predecessors' boxes in view), ``--sheet-seed`` reshuffles the order.
Open every sheet, write down what the person in the box is doing (or that the box is not on a
person's head or body), then map the notes to keys with ``index.json`` and write
``labels.json`` as ``{"<key>": {"label": ..., "seen": "..."}}`` (``label`` null to exclude the
track). The script prints keys that need a label or whose track
is gone, and ``load_labelled`` refuses a labels file that does not cover exactly the tracks.
``--sheets-only`` renders the sheets from the committed ``tracks.json`` without rewriting it.

The build is deterministic: two runs wrote byte-identical ``tracks.json``. Detections depend on
the detector bytes and on OpenCV's resize and GrabCut, so another OpenCV may move boxes by a
pixel; relabel when tracks appear or vanish, or when a clip or detector changes.

Labelled by eye from the blind sheets, on 2026-12-01: 53 tracks in all, 48 labelled (18
walking, 15 standing, 15 crouching) and 5 excluded artefacts.

* ``detector-v1`` / ``-v2``: 32 labelled (12 walking, 10 standing, 10 crouching) and 5 excluded
  (v2's boxes on the cameraman's hands or camera, on the astronaut's chest or suit).
* ``detector-v3`` (added later the same day, from v3-only sheets, ``--sheet-detectors
  detector-v3 --sheet-seed 31``): one track per clip, all 16 frames, 16 labelled (6 walking, 5
  standing, 5 crouching), none excluded; it also keeps the sinking cameraman whom v1 and v2
  lose after f7.

Every seen label matched how its clip was made; had one not, the seen one would stand. Adding
v3 left the v1/v2 tracks unchanged (same keys, same detection rows).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # run as a script from anywhere

from deployments.models.keypoints import COCO17, MIN_VISIBLE  # noqa: E402
from deployments.types import Detection, Keypoint, Track  # noqa: E402
from model_registry.references.action_labelled import (  # noqa: E402
    LABELS_FILE,
    TRACKS_FILE,
    dump_tracks,
    load_tracks,
    track_key,
)
from model_registry.references.bootstrap import Reference  # noqa: E402

FRAMES, FPS, WIDTH, HEIGHT = 16, 10.0, 640, 480
DETECTORS = ("detector-v1", "detector-v2", "detector-v3")  # bootstrap reference keys
# COCO-17 skeleton edges (keypoint indices), drawn for detections that carry the 17 points.
SKELETON = (
    (0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12),
    (11, 12), (11, 13), (13, 15), (12, 14), (14, 16),
)  # fmt: skip

# GrabCut hints per photo, in its own pixels: (probable-person rect, sure-person boxes,
# sure-background boxes), found by looking at the photos.
_CUTS = {
    "astronaut": (
        (20, 5, 370, 507),
        [(180, 40, 280, 180), (130, 180, 330, 300), (60, 300, 300, 500)],
        [(0, 0, 50, 260), (330, 0, 512, 250), (290, 140, 340, 200)],
    ),
    "camera": (
        (0, 55, 340, 457),
        [(20, 160, 140, 480), (165, 80, 245, 190), (262, 145, 322, 185)],
        [(340, 0, 512, 512), (250, 300, 512, 512), (160, 420, 512, 512), (0, 0, 512, 55)],
    ),
}


@dataclass(frozen=True)
class ClipSpec:
    name: str
    kind: str  # walk | stand | crouch: how it is made, not its label
    person: str  # astronaut | camera
    background: str
    height: int  # cut-out height in pixels
    x0: int  # left edge of the cut-out in frame 0
    sink: int = 0  # pixels of the cut-out below the frame's bottom edge
    speed: float = 0.0  # walk: px/frame, negative = leftwards (the cut-out is mirrored)
    bob: float = 0.0  # walk: step bob amplitude, px
    jitter: float = 0.0  # camera shake, px (std of a smoothed random walk)
    drop: float = 0.0  # crouch: fraction of the height the cut-out moves down
    squash: float = 0.0  # crouch: fraction of the height it loses
    start: int = 4  # crouch: first frame of the movement
    duration: int = 6  # crouch: frames it takes
    seed: int = 0


CLIPS: tuple[ClipSpec, ...] = (
    ClipSpec("walk-r-astronaut-rocket", "walk", "astronaut", "rocket", 300, 10, 0, 14, 3),
    ClipSpec("walk-l-astronaut-garage", "walk", "astronaut", "garage", 340, 330, 0, -18, 4),
    ClipSpec("walk-r-astronaut-brick-fast", "walk", "astronaut", "brick", 260, 0, 0, 26, 5),
    ClipSpec("walk-l-astronaut-gravel-slow", "walk", "astronaut", "gravel", 300, 360, 0, -8, 2),
    ClipSpec("walk-r-astronaut-grass-near", "walk", "astronaut", "grass", 400, -40, 40, 12, 3),
    ClipSpec("walk-r-camera-rocket", "walk", "camera", "rocket", 520, 0, 120, 10, 3),
    ClipSpec("stand-astronaut-rocket", "stand", "astronaut", "rocket", 320, 160, 0, jitter=2),
    ClipSpec("stand-astronaut-garage", "stand", "astronaut", "garage", 380, 120, 0, jitter=3),
    ClipSpec("stand-astronaut-gravel", "stand", "astronaut", "gravel", 280, 300, 0, jitter=1),
    ClipSpec("stand-astronaut-grass", "stand", "astronaut", "grass", 340, 200, 0, jitter=2),
    ClipSpec("stand-camera-gravel", "stand", "camera", "gravel", 520, 150, 120, jitter=2),
    ClipSpec("crouch-astronaut-garage", "crouch", "astronaut", "garage", 360, 150, drop=0.3,
              squash=0.15, start=3),
    ClipSpec("crouch-astronaut-brick", "crouch", "astronaut", "brick", 320, 200, drop=0.25,
              squash=0.2, start=5, duration=5),
    ClipSpec("crouch-astronaut-rocket", "crouch", "astronaut", "rocket", 340, 180, drop=0.3,
              squash=0.1, start=6, duration=5),
    ClipSpec("crouch-astronaut-grass", "crouch", "astronaut", "grass", 300, 250, drop=0.2,
              squash=0.15, start=2, duration=8),
    ClipSpec("crouch-camera-rocket", "crouch", "camera", "rocket", 520, 150, 120, drop=0.25,
              squash=0.15, start=4),
)  # fmt: skip


# --- photos --------------------------------------------------------------------------------


def _photo(name: str) -> np.ndarray:
    import skimage.data

    if name == "garage":
        import skimage

        path = Path(skimage.__file__).parent / "data" / "motorcycle_left.png"
        bgr = cv2.imread(str(path))
        if bgr is None:
            raise FileNotFoundError(path)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    img = np.asarray(getattr(skimage.data, name)())
    return np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img


@functools.cache
def background(name: str) -> np.ndarray:
    """The photo scaled to cover WIDTH x HEIGHT and centre-cropped."""
    img = _photo(name)
    s = max(WIDTH / img.shape[1], HEIGHT / img.shape[0])
    img = cv2.resize(img, (math.ceil(img.shape[1] * s), math.ceil(img.shape[0] * s)))
    y, x = (img.shape[0] - HEIGHT) // 2, (img.shape[1] - WIDTH) // 2
    return np.ascontiguousarray(img[y : y + HEIGHT, x : x + WIDTH])


@functools.cache
def cutout(person: str) -> tuple[np.ndarray, np.ndarray]:
    """(RGB, alpha in [0, 1]) of the person, cropped to the mask; GrabCut with a fixed seed."""
    img = _photo(person)
    rect, sure_fg, sure_bg = _CUTS[person]
    mask = np.zeros(img.shape[:2], np.uint8)
    x, y, w, h = rect
    mask[y : y + h, x : x + w] = cv2.GC_PR_FGD
    for x1, y1, x2, y2 in sure_fg:
        mask[y1:y2, x1:x2] = cv2.GC_FGD
    for x1, y1, x2, y2 in sure_bg:
        mask[y1:y2, x1:x2] = cv2.GC_BGD
    cv2.setRNGSeed(0)
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    cv2.grabCut(bgr, mask, (0, 0, 0, 0), bgd, fgd, 8, cv2.GC_INIT_WITH_MASK)  # rect unused
    fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    _, comp, stats, _ = cv2.connectedComponentsWithStats(fg)
    fg = (comp == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    ys, xs = np.nonzero(fg)
    y1, y2, x1, x2 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    alpha = cv2.GaussianBlur(fg.astype(np.float32), (5, 5), 0)[y1:y2, x1:x2]
    return np.ascontiguousarray(img[y1:y2, x1:x2]), alpha


# --- clips ---------------------------------------------------------------------------------


def _paste(canvas: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    h, w = alpha.shape
    cx1, cy1, cx2, cy2 = max(x, 0), max(y, 0), min(x + w, WIDTH), min(y + h, HEIGHT)
    if cx1 >= cx2 or cy1 >= cy2:
        return
    a = alpha[cy1 - y : cy2 - y, cx1 - x : cx2 - x, None]
    src = rgb[cy1 - y : cy2 - y, cx1 - x : cx2 - x].astype(np.float32)
    dst = canvas[cy1:cy2, cx1:cx2].astype(np.float32)
    canvas[cy1:cy2, cx1:cx2] = np.round(a * src + (1 - a) * dst).astype(np.uint8)


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def render_clip(spec: ClipSpec) -> list[np.ndarray]:
    rng = np.random.default_rng(spec.seed)
    bg = background(spec.background)
    rgb, alpha = cutout(spec.person)
    if spec.speed < 0:  # face the way it goes
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    scale = spec.height / alpha.shape[0]
    width = round(alpha.shape[1] * scale)
    shake = np.cumsum(rng.normal(0, spec.jitter, (FRAMES, 2)), axis=0) * 0.5
    shake -= shake.mean(axis=0)
    frames = []
    for i in range(FRAMES):
        h, y_shift, x = spec.height, 0.0, spec.x0 + spec.speed * i
        if spec.kind == "walk":
            y_shift = -spec.bob * abs(math.sin(math.pi * i / 3))  # a step every 3 frames
        elif spec.kind == "crouch":
            p = _smoothstep((i - spec.start) / spec.duration)
            h = round(spec.height * (1 - spec.squash * p))
            y_shift = spec.drop * spec.height * p
        sprite = cv2.resize(rgb, (width, h), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(alpha, (width, h), interpolation=cv2.INTER_AREA)
        canvas = bg.copy()
        bottom = HEIGHT + spec.sink + y_shift
        _paste(canvas, sprite, mask, round(x), round(bottom - h))
        if spec.jitter:
            m = np.array([[1, 0, shake[i, 0]], [0, 1, shake[i, 1]]], dtype=np.float32)
            canvas = cv2.warpAffine(canvas, m, (WIDTH, HEIGHT), borderMode=cv2.BORDER_REFLECT)
        frames.append(canvas)
    return frames


def detect_and_track(frames: list[np.ndarray], detector: object) -> list[Track]:
    from serving.pipelines.tracker import track_detections

    per_frame: list[list[Detection]] = detector.predict(frames)  # type: ignore[attr-defined]
    return track_detections(per_frame, frame_size=(WIDTH, HEIGHT), fps=FPS)


# --- contact sheets ------------------------------------------------------------------------


def _draw_skeleton(img: np.ndarray, det: Detection) -> bool:
    """Draw a COCO-17 detection's skeleton: seen points (confidence >= MIN_VISIBLE) and the
    bones between two seen points, left side orange, right side cyan, head white; unseen points
    as small grey dots. False (nothing drawn) for a detection without the 17 points."""
    pts = {k.name: k for k in det.keypoints}
    if not all(n in pts for n in COCO17):
        return False
    kps = [pts[n] for n in COCO17]

    def seen(k: Keypoint) -> bool:
        return k.score is None or k.score >= MIN_VISIBLE

    def colour(name: str) -> tuple[int, int, int]:
        if name.startswith("left"):
            return (255, 140, 0)
        return (0, 220, 255) if name.startswith("right") else (255, 255, 255)

    for a, b in SKELETON:
        if seen(kps[a]) and seen(kps[b]):
            pa, pb = (round(kps[a].x), round(kps[a].y)), (round(kps[b].x), round(kps[b].y))
            cv2.line(img, pa, pb, colour(COCO17[b]), 4)
    for k in kps:
        centre = (round(k.x), round(k.y))
        if seen(k):
            cv2.circle(img, centre, 6, colour(k.name), -1)
        else:
            cv2.circle(img, centre, 4, (128, 128, 128), -1)
    return True


def contact_sheet(
    frames: list[np.ndarray],
    tracks: dict[str, Track],
    title: str,
    shown: tuple[int, ...] = (0, 3, 6, 9, 12, 15),
) -> np.ndarray:
    """One row of six thumbnails per track (row title -> track), the track drawn on each:
    BlazePose tracks with their body square (green) and head box (yellow), COCO-17 tracks with
    their person box (green) and skeleton; the box centres' path over all frames on the last."""
    from deployments.models.action_features import reference_box

    thumb_w = 200
    s = thumb_w / WIDTH
    rows = []
    for key, track in tracks.items():
        by_frame = {p.frame_index: p.detection for p in track.points}
        heads = [((d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2) for d in by_frame.values()]
        cells = []
        for j, f in enumerate(shown):
            img = frames[f].copy()
            det = by_frame.get(f)
            if det is not None and _draw_skeleton(img, det):
                hx1, hy1, hx2, hy2 = (round(v) for v in det.box)
                cv2.rectangle(img, (hx1, hy1), (hx2, hy2), (0, 255, 0), 3)
            elif det is not None:
                x1, y1, x2, y2 = (round(v) for v in reference_box(det))
                cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 0), 3)
                hx1, hy1, hx2, hy2 = (round(v) for v in det.box)
                cv2.rectangle(img, (hx1, hy1), (hx2, hy2), (255, 255, 0), 2)
            if j == len(shown) - 1:
                pts = np.array(heads, dtype=np.int32).reshape(-1, 1, 2)
                cv2.polylines(img, [pts], False, (255, 0, 255), 3)
            img = cv2.resize(img, (thumb_w, round(HEIGHT * s)), interpolation=cv2.INTER_AREA)
            label = f"f{f}" + ("" if det is not None else " (no det)")
            cv2.putText(img, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 0, 0), 1)
            cells.append(img)
        row = np.concatenate(cells, axis=1)
        band = np.full((18, row.shape[1], 3), 255, np.uint8)
        cv2.putText(band, f"{key}  ({len(track.points)} detections)", (4, 13),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)  # fmt: skip
        rows += [band, row]
    if not rows:
        rows = [np.full((40, len(shown) * thumb_w, 3), 255, np.uint8)]
    head = np.full((22, rows[0].shape[1], 3), 230, np.uint8)
    cv2.putText(head, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1)
    return np.concatenate([head, *rows], axis=0)


def write_sheets(
    out: Path,
    clips: dict[str, dict[str, list[Track]]],
    detectors: tuple[str, ...] = DETECTORS,
    seed: int = 7,
) -> None:
    """Blind contact sheets of ``detectors``' tracks: numbered in a shuffled order (``seed``),
    tracks lettered, no clip or detector names, so the labeller judges the pictures, not the
    name; ``index.json`` maps sheet/letter to key."""
    out.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(seed).permutation(len(CLIPS))
    index: dict[str, dict[str, str]] = {}
    for n, i in enumerate(order, start=1):
        spec = CLIPS[int(i)]
        keyed = [
            (track_key(spec.name, d, t.track_id), t) for d, ts in clips[spec.name].items()
            if d in detectors for t in ts
        ]  # fmt: skip
        sheet_id = f"sheet-{n:02d}"
        index[sheet_id] = {chr(65 + j): key for j, (key, _) in enumerate(keyed)}
        rows = {f"track {chr(65 + j)}": t for j, (_, t) in enumerate(keyed)}
        sheet = contact_sheet(render_clip(spec), rows, sheet_id)
        cv2.imwrite(str(out / f"{sheet_id}.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")


def _references() -> dict[str, Reference]:
    """The detector references by key, built here rather than taken from ``references()`` so
    that an unrelated builder there (the action ones) cannot stop the build; the bootstrap
    cache is keyed by the reference key, so these are the same cached models."""
    from model_registry.references.detector import build_detector_v1, build_detector_v2
    from model_registry.references.yolo.detector import build_detector_v3

    builders = {
        "detector-v1": (1, build_detector_v1),
        "detector-v2": (2, build_detector_v2),
        "detector-v3": (3, build_detector_v3),
    }
    return {
        key: Reference("detector", version, key, key, build)
        for key, (version, build) in builders.items()
        if key in DETECTORS
    }


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="where tracks.json goes")
    parser.add_argument("--sheets", type=Path, help="also write contact sheets (PNG) here")
    parser.add_argument("--sheets-only", action="store_true", help="read tracks.json instead")
    parser.add_argument(
        "--sheet-detectors",
        default=",".join(DETECTORS),
        help="comma-separated detectors whose tracks the sheets show (default: all)",
    )
    parser.add_argument("--sheet-seed", type=int, default=7, help="shuffles the sheets' order")
    args = parser.parse_args(argv)

    clips: dict[str, dict[str, list[Track]]] = {}
    if args.sheets_only:
        for key, track in load_tracks(args.out / TRACKS_FILE).items():
            clip, detector, _ = key.rsplit("/", 2)
            clips.setdefault(clip, {}).setdefault(detector, []).append(track)
    else:
        from deployments.loader import load_model
        from model_registry.references.bootstrap import built_model_dir

        models = {key: load_model(built_model_dir(ref)) for key, ref in _references().items()}
        for spec in CLIPS:
            frames = render_clip(spec)
            clips[spec.name] = {k: detect_and_track(frames, m) for k, m in models.items()}
            counts = {k: [len(t.points) for t in v] for k, v in clips[spec.name].items()}
            print(f"{spec.name:32s} track lengths {counts}")
        specs = {s.name: asdict(s) for s in CLIPS}
        dump_tracks(args.out / TRACKS_FILE, clips, specs)
        size = (args.out / TRACKS_FILE).stat().st_size
        print(f"wrote {args.out / TRACKS_FILE} ({size / 1024:.0f} KiB)")

    if args.sheets:
        shown = tuple(d for d in args.sheet_detectors.split(",") if d)
        write_sheets(args.sheets, clips, shown, args.sheet_seed)
        print(f"contact sheets in {args.sheets} (which track is which: index.json there)")

    keys = {
        track_key(c, d, t.track_id) for c, per in clips.items() for d, ts in per.items() for t in ts
    }
    labels_path = args.out / LABELS_FILE
    labelled = set(json.loads(labels_path.read_text())) if labels_path.is_file() else set()
    for key in sorted(keys - labelled):
        print(f"needs a label: {key}")
    for key in sorted(labelled - keys):
        print(f"label for a track that is gone: {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
