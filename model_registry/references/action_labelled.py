"""The hand-labelled action set: real-detector tracks of real-photo clips, labelled by eye.

Why it exists: ``action`` v1 is trained *and* held-out-tested on one generator
(:mod:`model_registry.references.action_tracks`), so its manifest metrics say how well it learnt
the generator, not how it does on what a real detector reports. This set is judged by something
independent of the generator: clips composed from the real photos that ship in the scikit-image
wheel, run through the real reference detectors and the serving tracker, each resulting track
labelled once by eye from a blind contact sheet (from the picture, not from how the clip was
made). It complements the generator's own split; it does not replace it: it is small, and it
has no ``reaching`` examples (a rigid photo cannot extend an arm convincingly).

What it holds (labelled by eye from blind contact sheets, 2026-12-01): 16 clips, 53 tracks from
``detector-v1``, ``-v2`` (BlazePose) and ``-v3`` (YOLO11n-pose), 48 labelled (18 walking, 15
standing, 15 crouching; 16 per detector) and 5 excluded BlazePose artefacts; per-detector
counts and how to relabel are in ``build_tracks.py``.

Files (committed under ``tests/data/action_labelled/``, rebuilt by ``build_tracks.py`` there):

* ``tracks.json`` (format 2): ``"detectors"`` gives each detector's keypoint names and whether
  their confidences are kept (BlazePose ``detector-v1``/``-v2``: the four ``blazepose4`` points,
  x and y; YOLO ``detector-v3``: the 17 ``coco17`` points, x, y and confidence, which matters
  since a COCO point under 0.3 counts as unseen); per clip and detector, the tracks as
  :class:`deployments.types.Track` fields, a detection being the row ``[x1, y1, x2, y2, score,
  *per keypoint x, y (, confidence or null)..., *body_box or nothing]``, every number rounded to
  2 decimals. Format 1 (one x/y name list for the whole file) is still read.
* ``labels.json``: ``{"<clip>/<detector>/<track_id>": {"label": ..., "seen": ...}}``; the label is
  what the labeller saw, ``null`` for a track that is not one person doing one thing (excluded).

This module only reads, writes and scores; it has no image or tracker code, so a test can score
any action version on the committed tracks without running a detector.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from deployments.types import ActionPrediction, Detection, Keypoint, Track, TrackPoint

FORMAT = 2  # load_tracks also reads format 1 (one x/y keypoint list per file)
TRACKS_FILE = "tracks.json"
LABELS_FILE = "labels.json"
DATA_DIR = Path(__file__).resolve().parents[2] / "tests" / "data" / "action_labelled"


@dataclass(frozen=True)
class LabelledTrack:
    key: str  # "<clip>/<detector>/<track_id>"
    clip: str
    detector: str
    track: Track
    label: str
    seen: str  # the labeller's one-line note


class ActionClassifier(Protocol):
    def predict(self, tracks: list[Track]) -> list[ActionPrediction]: ...


# --- file format ---------------------------------------------------------------------------


def track_key(clip: str, detector: str, track_id: int) -> str:
    return f"{clip}/{detector}/{track_id}"


@dataclass(frozen=True)
class KeypointLayout:
    """How one detector's keypoints are written in its detection rows."""

    names: tuple[str, ...]
    confidence: bool  # True: three numbers per keypoint (x, y, confidence or null); else x, y

    @property
    def width(self) -> int:
        return (3 if self.confidence else 2) * len(self.names)


def layout_of(tracks: Iterable[Track]) -> KeypointLayout:
    """The layout a detector's tracks need: the keypoint names of its first detection that has
    any (every other one must have the same or none), with confidences if any keypoint has one."""
    names: tuple[str, ...] | None = None
    confidence = False
    for t in tracks:
        for p in t.points:
            kps = p.detection.keypoints
            if not kps:
                continue
            these = tuple(k.name for k in kps)
            if names is None:
                names = these
            elif these != names:
                raise ValueError(f"keypoints {list(these)} != {list(names)} in one detector")
            confidence = confidence or any(k.score is not None for k in kps)
    return KeypointLayout(names or (), confidence)


def _r(v: float | None) -> float | None:
    return None if v is None else round(float(v), 2)


def _encode_detection(det: Detection, layout: KeypointLayout) -> list[float | None]:
    if det.keypoints and tuple(k.name for k in det.keypoints) != layout.names:
        raise ValueError(f"keypoints {[k.name for k in det.keypoints]} != {list(layout.names)}")
    row: list[float | None] = [*det.box, det.score]
    for k in det.keypoints:
        if k.score is not None and not layout.confidence:
            raise ValueError(f"keypoint {k.name} has a confidence the layout does not keep")
        row += [k.x, k.y, k.score] if layout.confidence else [k.x, k.y]
    if det.body_box is not None:
        if not det.keypoints:
            raise ValueError("a body_box without keypoints cannot be encoded unambiguously")
        row += list(det.body_box)
    return [_r(v) for v in row]


def _xyc(values: Sequence[float | None]) -> tuple[float, float, float | None]:
    x, y, *c = values
    if x is None or y is None:
        raise ValueError("a keypoint's x and y must be numbers")
    return float(x), float(y), None if not c or c[0] is None else float(c[0])


def _decode_detection(row: Sequence[float | None], layout: KeypointLayout) -> Detection:
    n_kp = layout.width
    if len(row) not in (5, 5 + n_kp, 9 + n_kp) or (n_kp == 0 and len(row) != 5):
        raise ValueError(f"a detection row has {len(row)} numbers; expected 5, 5+kp or 9+kp")
    x1, y1, x2, y2, score = (float(v) for v in row[:5])  # type: ignore[arg-type]
    kps: tuple[Keypoint, ...] = ()
    if len(row) > 5:
        step = 3 if layout.confidence else 2
        flat = row[5 : 5 + n_kp]
        kps = tuple(
            Keypoint(name, *_xyc(flat[step * i : step * i + step]))
            for i, name in enumerate(layout.names)
        )
    body = row[5 + n_kp :] if len(row) == 9 + n_kp else None
    return Detection(
        box=(x1, y1, x2, y2),
        score=score,
        keypoints=kps,
        body_box=tuple(float(v) for v in body) if body else None,  # type: ignore[arg-type,misc]
    )


def dump_tracks(
    path: Path,
    clips: dict[str, dict[str, list[Track]]],
    specs: dict[str, dict[str, Any]],
) -> None:
    """``clips[clip][detector]`` -> tracks; ``specs[clip]`` says how the clip was made.

    Each detector's keypoint layout (names, whether confidences are kept) is taken from its
    tracks (:func:`layout_of`) and written once under ``"detectors"``.
    """
    per_detector: dict[str, list[Track]] = {}
    for tracks_by_detector in clips.values():
        for detector, tracks in tracks_by_detector.items():
            per_detector.setdefault(detector, []).extend(tracks)
    layouts = {d: layout_of(ts) for d, ts in per_detector.items()}
    out: dict[str, Any] = {
        "format": FORMAT,
        "detectors": {
            d: {"keypoints": list(lay.names), "confidence": lay.confidence}
            for d, lay in layouts.items()
        },
        "clips": {},
    }
    for clip, tracks_by_detector in clips.items():
        entry: dict[str, Any] = {"spec": specs[clip], "tracks": {}}
        for detector, tracks in tracks_by_detector.items():
            entry["tracks"][detector] = [
                {
                    "track_id": t.track_id,
                    "frame_size": list(t.frame_size),
                    "fps": t.fps,
                    "frames": [p.frame_index for p in t.points],
                    "detections": [
                        _encode_detection(p.detection, layouts[detector]) for p in t.points
                    ],
                }
                for t in tracks
            ]
        out["clips"][clip] = entry
    Path(path).write_text(json.dumps(out, separators=(",", ":")) + "\n")


def _layouts(data: dict[str, Any]) -> dict[str, KeypointLayout] | KeypointLayout:
    """Format 2: one layout per detector; format 1: one x/y name list for the whole file."""
    if data.get("format") == 1:
        return KeypointLayout(tuple(data["keypoints"]), confidence=False)
    if data.get("format") == FORMAT:
        return {
            d: KeypointLayout(tuple(e["keypoints"]), bool(e["confidence"]))
            for d, e in data["detectors"].items()
        }
    raise ValueError(f"format {data.get('format')!r}, this code reads 1 and {FORMAT}")


def load_tracks(path: Path = DATA_DIR / TRACKS_FILE) -> dict[str, Track]:
    """Every committed track by key ``<clip>/<detector>/<track_id>`` (format 2, or format 1)."""
    data = json.loads(Path(path).read_text())
    try:
        layouts = _layouts(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    out: dict[str, Track] = {}
    for clip, entry in data["clips"].items():
        for detector, tracks in entry["tracks"].items():
            if isinstance(layouts, KeypointLayout):
                layout = layouts
            elif detector in layouts:
                layout = layouts[detector]
            else:
                raise ValueError(f"{path}: clip {clip} has tracks of undeclared {detector!r}")
            for t in tracks:
                points = tuple(
                    TrackPoint(int(f), _decode_detection(row, layout))
                    for f, row in zip(t["frames"], t["detections"], strict=True)
                )
                fw, fh = t["frame_size"]
                out[track_key(clip, detector, t["track_id"])] = Track(
                    track_id=int(t["track_id"]),
                    points=points,
                    frame_size=(int(fw), int(fh)),
                    fps=float(t["fps"]),
                )
    return out


def load_labelled(data_dir: Path = DATA_DIR) -> list[LabelledTrack]:
    """The labelled tracks (label not null), in the labels file's order.

    A label key without a track, or a track without a label entry, is an error: the two files
    are committed together and must describe the same set.
    """
    tracks = load_tracks(Path(data_dir) / TRACKS_FILE)
    labels = json.loads((Path(data_dir) / LABELS_FILE).read_text())
    missing = sorted(set(tracks) - set(labels))
    unknown = sorted(set(labels) - set(tracks))
    if missing or unknown:
        raise ValueError(f"labels and tracks disagree: unlabelled {missing}, unknown {unknown}")
    out = []
    for key, entry in labels.items():
        if entry["label"] is None:
            continue
        clip, detector, _ = key.rsplit("/", 2)
        out.append(LabelledTrack(key, clip, detector, tracks[key], entry["label"], entry["seen"]))
    return out


# --- scoring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    labels: tuple[str, ...]  # the model's labels, confusion row/column order
    y_true: np.ndarray  # indices into labels
    y_pred: np.ndarray
    confidence: np.ndarray  # top softmax score per track

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.y_true == self.y_pred)) if len(self.y_true) else 0.0

    def per_label_accuracy(self) -> dict[str, float]:
        """Recall of every label that has examples (labels without examples are left out)."""
        return {
            name: float(np.mean(self.y_pred[self.y_true == k] == k))
            for k, name in enumerate(self.labels)
            if np.any(self.y_true == k)
        }

    def balanced_accuracy(self) -> float:
        """Mean per-label recall over the labels present: a majority-label guesser gets 1/k."""
        recalls = list(self.per_label_accuracy().values())
        return float(np.mean(recalls)) if recalls else 0.0

    def confusion(self) -> np.ndarray:
        n = len(self.labels)
        return np.bincount(self.y_true * n + self.y_pred, minlength=n * n).reshape(n, n)

    def mean_confidence(self, correct: bool) -> float:
        mask = (self.y_true == self.y_pred) == correct
        return float(self.confidence[mask].mean()) if mask.any() else float("nan")

    def summary(self) -> str:
        rows = [f"accuracy {self.accuracy:.3f} balanced {self.balanced_accuracy():.3f}"]
        for name, acc in self.per_label_accuracy().items():
            n = int(np.sum(self.y_true == self.labels.index(name)))
            rows.append(f"  {name:10s} {acc:.3f} of {n}")
        width = max(len(x) for x in self.labels)
        rows.append("  confusion (rows: labelled, columns: predicted)")
        rows.append("  " + " " * width + " " + " ".join(f"{x[:5]:>5s}" for x in self.labels))
        for name, row in zip(self.labels, self.confusion(), strict=True):
            rows.append(f"  {name:>{width}s} " + " ".join(f"{v:5d}" for v in row))
        rows.append(
            f"  mean top confidence: right {self.mean_confidence(True):.3f}, "
            f"wrong {self.mean_confidence(False):.3f}"
        )
        return "\n".join(rows)


def score_predictions(
    labels: Sequence[str], truth: Iterable[str], predictions: Iterable[ActionPrediction]
) -> Score:
    names = tuple(labels)
    preds = list(predictions)
    return Score(
        labels=names,
        y_true=np.array([names.index(t) for t in truth], dtype=np.int64),
        y_pred=np.array([names.index(p.label) for p in preds], dtype=np.int64),
        confidence=np.array([p.confidence for p in preds], dtype=np.float64),
    )


def score(model: ActionClassifier, labels: Sequence[str], items: Sequence[LabelledTrack]) -> Score:
    """Score ``model`` (whose output labels are ``labels``) on ``items``, one batched call."""
    unknown = sorted({it.label for it in items} - set(labels))
    if unknown:
        raise ValueError(f"labelled set uses labels {unknown} the model does not have")
    return score_predictions(
        labels, [it.label for it in items], model.predict([it.track for it in items])
    )
