"""Seeded drift trials: how often a report cries wolf, and how often it sees a real change.

Two pools of rows are drawn from the real-photo distribution of :mod:`drift.reference.photos`: the
*reference pool* (seed 0, the draws a bootstrap reference is made of) and the *trial pool*
(another seed: disjoint draws of the same distribution). Each trial pool image is also
transformed by every shift of :data:`SHIFTS` and its rows kept per shift, so a trial is only
row sampling and the statistics of :mod:`drift.statistics` (thousands of trials take seconds).

Trial ``t`` (seeds ``0..N-1``, none chosen by hand) samples ``reference_rows`` rows of the
reference pool and ``current_rows`` rows of a trial pool, and judges them with
:func:`drift.statistics.decide`. Distance thresholds, where the sizes call for them, are calibrated
on the reference sample only, which is disjoint from the current one.

Rows hold input features, prediction features when a ``predict`` function (a detector's
``Model.predict``) is given, and embeddings (:mod:`drift.embeddings`, computed once per pool
image) when an ``embedder`` is given; the embedding group is one hypothesis of the family.

Besides the shifts of :data:`SHIFTS`, which move the cheap features, :func:`matched_scene`
replaces each photo by one of another scene (:data:`SCENES`: microscopy, a retina, deep
space), resized to the photo it replaces, histogram-matched to it per channel, and matched in
focus and colourfulness too: light, contrast, colour, focus and framing keep the reference's
distribution, what the camera sees does not.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pandas as pd

from drift.embeddings import EMB_PREFIX, Embedder, embedding_columns
from drift.features import FEATURE_MAX_SIDE, image_features
from drift.reference.photos import augment, photo
from drift.rows import PRED_PREFIX, input_row, input_size, prediction_row
from drift.statistics import ALPHA, EMBEDDING, Judgement, decide, feature_columns

Shift = Callable[[np.ndarray], np.ndarray]


def darken(gain: float) -> Shift:
    def shift(image: np.ndarray) -> np.ndarray:
        return np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)

    return shift


def blur(sigma: float) -> Shift:
    def shift(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (0, 0), sigma)

    return shift


def crop_and_rotate(image: np.ndarray) -> np.ndarray:
    """The centre 60 % of each side, turned a quarter: a camera zoomed in and mounted sideways."""
    h, w = image.shape[:2]
    ch, cw = max(1, int(h * 0.6)), max(1, int(w * 0.6))
    y, x = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(np.rot90(image[y : y + ch, x : x + cw]))


SHIFTS: dict[str, Shift] = {
    "darkened": darken(0.4),
    "blurred": blur(3.0),
    "cropped_rotated": crop_and_rotate,
}
# The group a shift must be reported in: the first three change how clients' photos look, the
# matched scene only what they show.
EXPECTED_GROUP = {
    "darkened": "input",
    "blurred": "input",
    "cropped_rotated": "input",
    "matched_scene": EMBEDDING,
}
# Real RGB photos of the scikit-image wheel that drift.reference.photos does not use.
SCENES = ("immunohistochemistry", "retina", "hubble_deep_field")


@functools.cache
def scene_photos() -> tuple[np.ndarray, ...]:
    from skimage import data

    return tuple(np.ascontiguousarray(getattr(data, name)()[:, :, :3]) for name in SCENES)


def _focus(gray: np.ndarray) -> float:
    """``drift.features``' sharpness of an image already at the feature scale."""
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def _matching_blur(stand_in: np.ndarray, target: float) -> float:
    """The Gaussian sigma (in ``stand_in``'s pixels) that brings its sharpness, measured as
    ``drift.features`` does (grey, at ``FEATURE_MAX_SIDE``), down to ``target``: found by
    bisection at the feature scale, where it is cheap."""
    scale = min(1.0, FEATURE_MAX_SIDE / max(stand_in.shape[:2]))
    small = cv2.resize(stand_in, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    if _focus(gray) <= target:
        return 0.0  # as soft as the photo it replaces, or softer: leave it
    lo, hi = 0.0, 8.0
    for _ in range(12):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _focus(cv2.GaussianBlur(gray, (0, 0), mid)) > target else (lo, mid)
    return hi / scale


def _matched(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    from skimage.exposure import match_histograms

    out = match_histograms(source, target, channel_axis=-1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)  # type: ignore[no-any-return]


def matched_scene(image: np.ndarray) -> np.ndarray:
    """A photo of another scene (:data:`SCENES`) in ``image``'s place, with ``image``'s light,
    contrast, colour and size: augmented like the reference's draws, resized to ``image``'s
    size and histogram-matched to it per channel. Per-channel matching keeps neither focus nor
    how the channels go together: alone, it left the K-S test on sharpness firing in 40 of 40
    trials (the scenes are sharper than the reference's photos) and colourfulness in some. So
    the scene is first softened until the matched result has ``image``'s sharpness (two passes:
    the match itself sharpens a little), and the result's chroma is then scaled to ``image``'s
    colourfulness. Seeded by ``image``'s pixels: the same photo always gets the same stand-in."""
    rng = np.random.default_rng(zlib.crc32(image.tobytes()))
    scenes = scene_photos()
    scene = augment(scenes[int(rng.integers(len(scenes)))], rng)
    h, w = image.shape[:2]
    scene = cv2.resize(scene, (w, h), interpolation=cv2.INTER_AREA)
    want = image_features(image)
    out, sigma = _matched(scene, image), 0.0
    for _ in range(2):
        more = _matching_blur(out, want["sharpness"])
        if more <= 0:
            break
        sigma = float(np.hypot(sigma, more))  # Gaussian blurs add in quadrature
        out = _matched(cv2.GaussianBlur(scene, (0, 0), sigma), image)
    return _with_colourfulness(out, want["colorfulness"])


def _with_colourfulness(image: np.ndarray, want: float) -> np.ndarray:
    """``image`` with its chroma scaled about its luma (BT.601, what the grey features read)
    so that its colourfulness is ``want``: luma, hence brightness, contrast and sharpness, stay
    as they are, and colourfulness (linear in the chroma) scales exactly, clipping aside."""
    have = image_features(image)["colorfulness"]
    if have <= 0:
        return image
    rgb = image.astype(np.float32)
    luma = (rgb @ np.array([0.299, 0.587, 0.114], np.float32))[:, :, None]
    out = luma + (want / have) * (rgb - luma)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


SCENE_SHIFTS: dict[str, Shift] = {"matched_scene": matched_scene}


def _row(image: np.ndarray, output: Any | None, embedding: Mapping[str, float]) -> dict[str, Any]:
    row: dict[str, Any] = {**input_row(image), **embedding}
    if output is not None:
        row.update(prediction_row("detections", output, input_size(image)))
    return row


def pools(
    n: int,
    seed: int,
    shifts: Mapping[str, Shift] | None = None,
    predict: Callable[[list[np.ndarray]], list[Any]] | None = None,
    batch: int = 8,
    embedder: Embedder | None = None,
) -> dict[str, pd.DataFrame]:
    """Rows of ``n`` photo draws (``seed``) as they are (``"none"``) and under each shift;
    with ``embedder``, each image is embedded once, as it is built."""
    rng = np.random.default_rng(seed)
    names = ["none", *(shifts or {})]
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for start in range(0, n, batch):
        images = [augment(photo(i), rng) for i in range(start, min(n, start + batch))]
        for name in names:
            shifted = images if name == "none" else [(shifts or {})[name](im) for im in images]
            outputs: Sequence[Any] = predict(shifted) if predict else [None] * len(shifted)
            embedded = embedder.rows(shifted) if embedder else [{} for _ in shifted]
            rows[name].extend(
                _row(im, out, emb) for im, out, emb in zip(shifted, outputs, embedded, strict=True)
            )
    return {name: pd.DataFrame(r) for name, r in rows.items()}


def groups_of(columns: Sequence[str]) -> dict[str, list[str]]:
    return {
        "input": [c for c in columns if not c.startswith((PRED_PREFIX, EMB_PREFIX))],
        "prediction": [c for c in columns if c.startswith(PRED_PREFIX)],
        EMBEDDING: embedding_columns(columns),
    }


def trial(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    seed: int,
    *,
    reference_rows: int,
    current_rows: int,
    alpha: float = ALPHA,
) -> Judgement:
    """One seeded trial: disjoint samples of the two pools, judged by the family rule."""
    rng = np.random.default_rng(seed)
    ref = reference.iloc[rng.choice(len(reference), reference_rows, replace=False)]
    cur = current.iloc[rng.choice(len(current), current_rows, replace=False)]
    cols = feature_columns(ref, cur)
    emb = embedding_columns(c for c in ref.columns if c in cur.columns)
    return decide(ref, cur, cols, alpha=alpha, groups=groups_of([*cols, *emb]), embedding=emb)


@dataclass(frozen=True)
class Rate:
    """Out of ``trials``: reports that drifted, and those that named ``group``."""

    trials: int
    drifted: int
    named: int
    group: str
    features: dict[str, int]

    @property
    def rate(self) -> float:
        return self.drifted / self.trials

    @property
    def named_rate(self) -> float:
        return self.named / self.trials


def rate(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    trials: int,
    *,
    reference_rows: int,
    current_rows: int,
    group: str = "input",
    alpha: float = ALPHA,
) -> Rate:
    """Trials ``0..trials-1`` of one stream: how many drifted, how many named ``group``."""
    drifted = named = 0
    counts = dict.fromkeys(feature_columns(reference, current), 0)
    if embedding_columns(reference.columns):
        counts[EMBEDDING] = 0
    for t in range(trials):
        j = trial(
            reference,
            current,
            t,
            reference_rows=reference_rows,
            current_rows=current_rows,
            alpha=alpha,
        )
        drifted += j.drifted
        named += group in j.drifted_groups
        for f in j.features:
            counts[f.name] = counts.get(f.name, 0) + f.drifted
    return Rate(trials, drifted, named, group, counts)
