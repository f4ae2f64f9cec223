"""Reference datasets: what a model version's rows look like on its evaluation inputs.

At registration every version is run on a seeded evaluation set (for images: real photos that
ship in the scikit-image wheel, augmented in framing, size, mirror, light and focus, see
``drift.reference.photos``; rendered text lines; synthetic clips and person tracks) and the rows are
frozen with the version in MLflow
(see ``MlflowModelStore.log_reference``). Later reports compare live windows against that
frozen frame, never against a moving window of recent rows (which would never flag drift).

``evaluation_inputs(task, n, seed=1)`` also gives traffic "like the reference" for tests and
load generators; the reference itself uses seed 0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pandas as pd

from drift.embeddings import Embedder, default_embedder
from drift.reference.photos import photo_draws
from drift.rows import input_row, input_size, prediction_row

TASK_OUTPUT_KIND = {"detection": "detections", "ocr": "text", "action": "actions"}
# 200 photo rows: what the seeded trials (tests/unit/drift/test_drift_trials.py) and the
# benchmark (load_tests/drift_rates.py) judge 40-row windows against; a YOLO version's
# reference builds in about 25 s on 2 cores (cached by the model files' hash).
DEFAULT_ROWS = {"detection": 200, "ocr": 60, "action": 120}
_WORDS = (
    "RETURN ORDER SKU ITEM QTY BOX DAMAGED REFUND LABEL PARCEL RMA SHIP TO FROM DOCK BIN "
    "WAREHOUSE CHECK OK NO YES SEAL"
).split()


@dataclass(frozen=True)
class EvalClip:
    """A clip as the clip pipeline sees it (frames + fps), for clip input features."""

    frames: list[np.ndarray]
    fps: float


@functools.cache
def _photos() -> tuple[np.ndarray, ...]:
    from skimage import data

    gray = data.camera()
    return (
        data.astronaut(),
        data.coffee(),
        data.chelsea(),
        data.rocket(),
        np.repeat(gray[:, :, None], 3, axis=2),
    )


def _jitter(image: np.ndarray, rng: np.random.Generator, long_side: tuple[int, int]) -> np.ndarray:
    h, w = image.shape[:2]
    ch, cw = int(h * rng.uniform(0.7, 1.0)), int(w * rng.uniform(0.7, 1.0))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = image[y : y + ch, x : x + cw]
    scale = rng.uniform(*long_side) / max(ch, cw)
    out = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-15, 15)
    out = np.clip(out.astype(np.float32) * gain + bias, 0, 255)
    if rng.random() < 0.25:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.2))
    return out.astype(np.uint8)


def evaluation_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` real RGB photos (people, objects, scenes) of 320-960 px, augmented like uploads
    (:func:`drift.reference.photos.photo_draws`)."""
    return photo_draws(n, seed)


def evaluation_text_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` white-ish forms with 1-3 printed lines of warehouse words and numbers."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lines = []
        for _ in range(int(rng.integers(1, 4))):
            words = list(rng.choice(_WORDS, size=int(rng.integers(1, 3))))
            lines.append(" ".join([*words, str(int(rng.integers(10, 99999)))]))
        width, scale = int(rng.integers(480, 800)), float(rng.uniform(1.0, 1.5))
        paper = int(rng.integers(225, 256))
        img = np.full((40 + 60 * len(lines), width, 3), paper, np.uint8)
        for i, line in enumerate(lines):
            cv2.putText(
                img,
                line,
                (20, 55 + 60 * i),
                cv2.FONT_HERSHEY_SIMPLEX,
                scale,
                (0, 0, 0),
                2,
                cv2.LINE_AA,
            )
        out.append(img)
    return out


def evaluation_clips(n: int, seed: int = 0) -> list[EvalClip]:
    """``n`` short clips: a person photo moving (or not) across a scene, 8-16 frames."""
    rng = np.random.default_rng(seed)
    photos = _photos()
    person = cv2.resize(photos[0][:, 128:384], (120, 240), interpolation=cv2.INTER_AREA)
    clips = []
    for i in range(n):
        scene = cv2.resize(_jitter(photos[1 + i % 3], rng, (640, 640)), (640, 360))
        step, frames = float(rng.choice([0.0, 8.0, 16.0])), int(rng.integers(8, 17))
        out = []
        for f in range(frames):
            canvas = scene.copy()
            x = int(min(500, 20 + f * step))
            canvas[110:350, x : x + 120] = person
            out.append(canvas)
        clips.append(EvalClip(out, float(rng.choice([8.0, 10.0, 15.0]))))
    return clips


def evaluation_inputs(task: str, n: int, seed: int = 0) -> list[tuple[Any, Any]]:
    """(pipeline input, model input) pairs for ``task``: images for detection and OCR; for the
    action model a clip (its input features) paired with a generated person track."""
    if task == "detection":
        return [(img, img) for img in evaluation_images(n, seed)]
    if task == "ocr":
        return [(img, img) for img in evaluation_text_images(n, seed)]
    if task == "action":
        from model_registry.references.action_tracks import LABELS, generate_track

        rng = np.random.default_rng(seed + 10_000)
        tracks = [generate_track(rng, LABELS[i % len(LABELS)], track_id=i) for i in range(n)]
        return list(zip(evaluation_clips(n, seed), tracks, strict=True))
    raise ValueError(f"task has value {task!r}. Expected one of {sorted(TASK_OUTPUT_KIND)}.")


def build_reference(
    predict: Callable[[list[Any]], list[Any]],
    task: str,
    *,
    rows: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
) -> pd.DataFrame:
    """Run ``predict`` on the evaluation set of ``task``; one feature row per input."""
    n = rows if rows is not None else DEFAULT_ROWS[task]
    if n < 1:
        raise ValueError(f"rows has value {n!r}. Expected at least 1.")
    return reference_rows(predict, task, evaluation_inputs(task, n, seed), batch_size=batch_size)


def reference_rows(
    predict: Callable[[list[Any]], list[Any]],
    task: str,
    pairs: list[tuple[Any, Any]],
    *,
    batch_size: int = 8,
    embedder: Embedder | None = None,
) -> pd.DataFrame:
    """Run ``predict`` on (pipeline input, model input) ``pairs``; one feature row per input,
    the same columns live capture writes (``drift.rows``). Every row gets its embedding when
    the embedder (default: the cache's) is available; live capture embeds only a sample."""
    embedder = embedder if embedder is not None else default_embedder()
    kind = TASK_OUTPUT_KIND[task]
    out: list[dict[str, Any]] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        outputs = predict([model_input for _, model_input in chunk])
        embedded = embedder.rows([value for value, _ in chunk])
        for (value, _), output, emb in zip(chunk, outputs, embedded, strict=True):
            preds = [output] if kind == "actions" else output
            out.append(
                {**input_row(value), **emb, **prediction_row(kind, preds, input_size(value))}
            )
    return pd.DataFrame(out)
