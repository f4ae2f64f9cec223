"""Image embeddings for drift: what a scene *is*, where the cheap features say how it looks.

Brightness, focus and framing (:mod:`drift.features`) miss a camera that starts filming another
scene with the same light: no single statistic moves. An ImageNet network's pooled features do.
:class:`Embedder` runs EfficientNet-Lite0's penultimate layer (1280-d, built into the cache by
:mod:`model_registry.references.embedder`) with ONNX Runtime on one CPU thread, and projects the
vector to :data:`EMBEDDING_DIMS` numbers with a fixed Gaussian random projection (seeded here,
so every process, reference and live alike, projects the same way; distances are kept up to a
few percent, Johnson-Lindenstrauss, which is all the MMD test of
:mod:`drift.statistics.mmd` needs). Columns are ``emb_00 .. emb_31``.

The network costs milliseconds per image, so live capture embeds only a sample of rows, in its
thread (:mod:`drift.capture`), never on the request path. Without the ONNX file the embedder is
unavailable: rows simply carry no ``emb_`` columns.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deployments.images import EncodedImage, reduce_pow2

EMB_PREFIX = "emb_"
EMBEDDING_DIMS = 32
# Fixed forever for a FEATURES_VERSION: a reference and a window must use the same projection.
PROJECTION_SEED = 20_240_601
# The ONNX file's contract (model_registry.references.embedder builds it): a new name when
# what it computes changes, so a cache never serves an old build.
EMBEDDER_FILE = "efficientnet-lite0-features-r1.onnx"
INPUT_NAME, OUTPUT_NAME = "images", "features"
INPUT_SIZE, FEATURE_DIMS = 224, 1280
# EfficientNet-Lite's input normalisation (TF's efficientnet/lite builder: MEAN_RGB 127,
# STDDEV_RGB 128), not the ImageNet mean/std of the non-Lite models.
MEAN, STD = 127.0, 128.0
RUN_BATCH = 8
EMBEDDING_COLUMNS = tuple(f"{EMB_PREFIX}{i:02d}" for i in range(EMBEDDING_DIMS))


@functools.cache
def projection(in_dims: int = FEATURE_DIMS, out_dims: int = EMBEDDING_DIMS) -> np.ndarray:
    """The (in_dims, out_dims) Gaussian projection, N(0, 1/out_dims) entries: squared lengths
    are kept on average."""
    rng = np.random.default_rng(PROJECTION_SEED)
    matrix = rng.standard_normal((in_dims, out_dims)) / np.sqrt(out_dims)
    matrix.setflags(write=False)
    return matrix


def embedder_file(cache: Path | None = None) -> Path:
    """Where the embedder's ONNX file lives in ``cache`` (default: the platform's cache dir);
    it may not exist (``model_registry.references.embedder.ensure_embedder`` builds it)."""
    from model_registry.settings import cache_dir

    return (cache if cache is not None else cache_dir()) / "embedder" / EMBEDDER_FILE


def preprocess(images: Sequence[np.ndarray]) -> np.ndarray:
    """RGB uint8 images -> the NCHW float32 batch the network expects: the shorter side scaled
    to 256 (area averaging), the centre 224x224, then ``(x - MEAN) / STD`` per channel."""
    out = np.empty((len(images), 3, INPUT_SIZE, INPUT_SIZE), np.float32)
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) == 0:
            raise ValueError(f"Expected an HxWx3 RGB image, got shape {image.shape}.")
        image = reduce_pow2(image)  # as a reduced JPEG decode (deployments.images)
        h, w = image.shape[:2]
        # 224 / 256 = 0.875: the crop share of the Lite models' evaluation recipe.
        scale = (INPUT_SIZE / 0.875) / min(h, w)
        size = (max(INPUT_SIZE, round(w * scale)), max(INPUT_SIZE, round(h * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(np.ascontiguousarray(image), size, interpolation=interpolation)
        y, x = (size[1] - INPUT_SIZE) // 2, (size[0] - INPUT_SIZE) // 2
        crop = resized[y : y + INPUT_SIZE, x : x + INPUT_SIZE].astype(np.float32)
        out[i] = ((crop - MEAN) / STD).transpose(2, 0, 1)
    return out


def embedding_columns(columns: Sequence[str] | Any) -> list[str]:
    return [c for c in columns if str(c).startswith(EMB_PREFIX)]


def embedding_image(value: Any) -> np.ndarray:
    """The image to embed for a request input: the image itself, or a clip's middle frame."""
    if isinstance(value, np.ndarray):
        image = value
    elif isinstance(value, EncodedImage):
        image = value.small()
    else:
        frames = getattr(value, "frames", None)
        if frames is None or len(frames) == 0:
            raise TypeError(f"Expected an image array or a clip, got {type(value).__name__}.")
        image = frames[len(frames) // 2]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image[:, :, :3])


class Embedder:
    """EfficientNet-Lite0 features, projected; the session is opened on first use."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._session: Any = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self.path is not None and self.path.is_file()

    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The raw (n, 1280) penultimate features of RGB images (or clips' middle frames)."""
        if not images:
            return np.zeros((0, FEATURE_DIMS), np.float32)
        session = self._open()
        out = []
        # Chunks of RUN_BATCH: larger ORT batches were slower per image on 2 cores (cache).
        for start in range(0, len(images), RUN_BATCH):
            batch = preprocess([embedding_image(im) for im in images[start : start + RUN_BATCH]])
            out.append(np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]))
        return np.concatenate(out)

    def embed_batch(self, images: Sequence[Any]) -> np.ndarray:
        """(n, EMBEDDING_DIMS) projected embeddings."""
        raw = self.features(images).astype(np.float64)
        return raw @ projection(raw.shape[1]) if len(raw) else np.zeros((0, EMBEDDING_DIMS))

    def rows(self, images: Sequence[Any]) -> list[dict[str, float]]:
        """One ``emb_`` row per image; no rows' columns at all when unavailable."""
        if not self.available:
            return [{} for _ in images]
        return [
            dict(zip(EMBEDDING_COLUMNS, map(float, vec), strict=True))
            for vec in self.embed_batch(images)
        ]

    def row(self, image: Any) -> dict[str, float]:
        return self.rows([image])[0]

    def _open(self) -> Any:
        with self._lock:  # the capture thread and a report could both ask first
            if self._session is None:
                if not self.available:
                    raise FileNotFoundError(f"No embedder model at {self.path}.")
                import onnxruntime as ort

                opts = ort.SessionOptions()
                # One core: capture shares the ingress's CPU with request handling.
                opts.intra_op_num_threads = opts.inter_op_num_threads = 1
                self._session = ort.InferenceSession(
                    str(self.path), opts, providers=["CPUExecutionProvider"]
                )
            return self._session


def default_embedder(cache: Path | None = None) -> Embedder:
    """The embedder of the cache dir's ONNX file (resolved now: tests and processes may point
    the cache elsewhere), one per file and process, so one ONNX Runtime session."""
    return _embedder_at(embedder_file(cache))


@functools.cache
def _embedder_at(path: Path) -> Embedder:
    return Embedder(path)
