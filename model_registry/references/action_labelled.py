"""The hand-labelled action set: real-detector tracks of real-photo clips, labelled by eye.

Why it exists: ``action`` v1 is trained *and* held-out-tested on one generator
(:mod:`model_registry.references.action_tracks`), so its manifest metrics say how well it learnt
the generator, not how it does on what a real detector reports. This set is judged by something
independent of the generator: clips composed from the real photos that ship in the scikit-image
wheel, run through the real reference detectors and the serving tracker, each resulting track
labelled once by eye from a blind contact sheet (from the picture, not from how the clip was
made). It complements the generator's own split; it does not replace it: it is small, and it
has no ``reaching`` examples (a rigid photo cannot extend an arm convincingly).

Files (committed under ``tests/data/action_labelled/``, rebuilt by ``build_tracks.py`` there):

* ``tracks.json``: per clip and detector, the tracks as :class:`deployments.types.Track` fields;
  a detection is ``[x1, y1, x2, y2, score, *keypoint xy..., *body_box or nothing]``.
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

FORMAT = 1
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


def _encode_detection(det: Detection, keypoints: Sequence[str]) -> list[float]:
    by_name = {k.name: k for k in det.keypoints}
    if det.keypoints and [k.name for k in det.keypoints] != list(keypoints):
        raise ValueError(f"keypoints {[k.name for k in det.keypoints]} != {list(keypoints)}")
    row = [*det.box, det.score]
    if det.keypoints:
        for name in keypoints:
            row += [by_name[name].x, by_name[name].y]
    if det.body_box is not None:
        if not det.keypoints:
            raise ValueError("a body_box without keypoints cannot be encoded unambiguously")
        row += list(det.body_box)
    return [round(float(v), 2) for v in row]


def _decode_detection(row: Sequence[float], keypoints: Sequence[str]) -> Detection:
    n_kp = 2 * len(keypoints)
    if len(row) not in (5, 5 + n_kp, 9 + n_kp):
        raise ValueError(f"a detection row has {len(row)} numbers; expected 5, 5+kp or 9+kp")
    x1, y1, x2, y2, score = (float(v) for v in row[:5])
    kps: tuple[Keypoint, ...] = ()
    if len(row) > 5:
        flat = row[5 : 5 + n_kp]
        kps = tuple(
            Keypoint(name, float(flat[2 * i]), float(flat[2 * i + 1]))
            for i, name in enumerate(keypoints)
        )
    body = row[5 + n_kp :] if len(row) == 9 + n_kp else None
    return Detection(
        box=(x1, y1, x2, y2),
        score=score,
        keypoints=kps,
        body_box=tuple(float(v) for v in body) if body else None,  # type: ignore[arg-type]
    )


def dump_tracks(
    path: Path,
    clips: dict[str, dict[str, list[Track]]],
    specs: dict[str, dict[str, Any]],
    keypoints: Sequence[str],
) -> None:
    """``clips[clip][detector]`` -> tracks; ``specs[clip]`` says how the clip was made."""
    out: dict[str, Any] = {"format": FORMAT, "keypoints": list(keypoints), "clips": {}}
    for clip, per_detector in clips.items():
        entry: dict[str, Any] = {"spec": specs[clip], "tracks": {}}
        for detector, tracks in per_detector.items():
            entry["tracks"][detector] = [
                {
                    "track_id": t.track_id,
                    "frame_size": list(t.frame_size),
                    "fps": t.fps,
                    "frames": [p.frame_index for p in t.points],
                    "detections": [_encode_detection(p.detection, keypoints) for p in t.points],
                }
                for t in tracks
            ]
        out["clips"][clip] = entry
    Path(path).write_text(json.dumps(out, separators=(",", ":")) + "\n")


def load_tracks(path: Path = DATA_DIR / TRACKS_FILE) -> dict[str, Track]:
    """Every committed track by key ``<clip>/<detector>/<track_id>``."""
    data = json.loads(Path(path).read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: format {data.get('format')!r}, this code reads {FORMAT}")
    keypoints = data["keypoints"]
    out: dict[str, Track] = {}
    for clip, entry in data["clips"].items():
        for detector, tracks in entry["tracks"].items():
            for t in tracks:
                points = tuple(
                    TrackPoint(int(f), _decode_detection(row, keypoints))
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
