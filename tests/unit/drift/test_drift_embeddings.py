"""The image embedder (EfficientNet-Lite0 features, projected) and the embedding group."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from deployments.types import Detection
from drift import statistics as stats
from drift.capture import CaptureJob, CaptureQueue
from drift.embeddings import (
    EMB_PREFIX,
    EMBEDDING_COLUMNS,
    EMBEDDING_DIMS,
    Embedder,
    embedder_file,
    embedding_image,
)
from drift.evidently_adapter import compute_drift
from drift.reference import EvalClip, reference_rows
from drift.reference.photos import photo_draws
from model_registry import settings
from serving.errors import RegistryError

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def cache() -> Path:
    override = os.environ.get(settings.ENV_CACHE_DIR)
    return Path(override) if override else REPO / ".canaryserve" / "cache"


@pytest.fixture(scope="module")
def model_file(cache: Path) -> Path:
    """The cache's embedder (``make install``/bootstrap build it), built here if missing."""
    path = embedder_file(cache)
    if path.is_file():
        return path
    try:
        from model_registry.references.embedder import ensure_embedder

        return ensure_embedder(cache)
    except (ImportError, RegistryError) as e:  # no wheel cache and no network
        pytest.skip(f"the embedder cannot be built here: {e}")


@pytest.fixture(scope="module")
def embedder(model_file: Path) -> Embedder:
    return Embedder(model_file)


def test_rows_carry_32_deterministic_embedding_columns(embedder: Embedder) -> None:
    images = photo_draws(3, seed=7)
    rows = embedder.rows(images)
    assert [sorted(r) for r in rows] == [sorted(EMBEDDING_COLUMNS)] * 3
    assert EMBEDDING_COLUMNS[0] == "emb_00" and len(EMBEDDING_COLUMNS) == EMBEDDING_DIMS == 32
    again = Embedder(embedder.path).rows(images)  # another session: the same numbers
    for a, b in zip(rows, again, strict=True):
        assert np.allclose(list(a.values()), list(b.values()), atol=1e-5)
    one = embedder.row(images[1])
    assert np.allclose(list(one.values()), list(rows[1].values()), atol=1e-4)
    assert not np.allclose(list(rows[0].values()), list(rows[1].values()), atol=1e-2)


def test_without_the_model_file_the_embedder_is_unavailable_and_rows_have_no_columns(
    tmp_path: Path,
) -> None:
    missing = Embedder(tmp_path / "absent.onnx")
    image = photo_draws(1, seed=3)[0]
    assert not missing.available and missing.rows([image]) == [{}]
    frame = reference_rows(
        lambda batch: [[] for _ in batch], "detection", [(image, image)], embedder=missing
    )
    assert not [c for c in frame.columns if c.startswith(EMB_PREFIX)]
    assert "brightness" in frame.columns


def test_reference_rows_embed_every_row(embedder: Embedder) -> None:
    images = photo_draws(4, seed=5)
    frame = reference_rows(
        lambda batch: [[] for _ in batch],
        "detection",
        [(im, im) for im in images],
        embedder=embedder,
    )
    assert frame[list(EMBEDDING_COLUMNS)].notna().all().all() and len(frame) == 4


def test_a_clip_is_embedded_by_its_middle_frame() -> None:
    frames = [np.full((8, 8, 3), v, np.uint8) for v in (10, 20, 30, 40)]
    assert (embedding_image(EvalClip(frames, 10.0)) == 30).all()
    assert embedding_image(np.zeros((4, 4), np.uint8)).shape == (4, 4, 3)
    with pytest.raises(TypeError, match="got str"):
        embedding_image("frame")


class _CountingEmbedder(Embedder):
    """Stands in for the network: one fixed vector per image, and a count of the images."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__(None)
        self.seen = 0
        self.fail = fail

    @property
    def available(self) -> bool:
        return True

    def embed_batch(self, images: Any) -> np.ndarray:
        if self.fail:
            raise RuntimeError("onnxruntime fell over")
        self.seen += len(images)
        return np.ones((len(images), EMBEDDING_DIMS))


def _job(i: int) -> CaptureJob:
    det = Detection(box=(4.0, 4.0, 20.0, 30.0), score=0.9, label="person")
    image = np.full((48, 64, 3), 100 + i, np.uint8)
    return CaptureJob(
        (("n", "detector", "detections"),),
        image,
        {"n": [det]},
        {"detector": 1},
        "live",
        f"r{i}",
        time.time(),  # fresh: a capture drops what is older than its max_age_s
    )


def test_capture_embeds_only_the_sampled_share_of_requests() -> None:
    got: list[dict[str, Any]] = []
    draws = iter([0.1, 0.9, 0.2, 0.95, 0.6, 0.3])
    fake = _CountingEmbedder()
    q = CaptureQueue(
        got.extend,
        batch_size=6,
        flush_interval_s=0.01,
        embedder=fake,
        embedding_sample_rate=0.5,
        embedding_rng=lambda: next(draws),
    )
    for i in range(6):
        q.submit(_job(i))
    assert q.flush(5)
    embedded = [r["request_id"] for r in got if "emb_00" in r]
    assert embedded == ["r0", "r2", "r5"] and fake.seen == 3 and q.embedded_jobs == 3
    assert len(got) == 6 and q.sent_rows == 6


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_capture_embedding_rate_zero_disables_and_one_embeds_all(rate: float) -> None:
    got: list[dict[str, Any]] = []
    fake = _CountingEmbedder()
    q = CaptureQueue(got.extend, flush_interval_s=0.01, embedder=fake, embedding_sample_rate=rate)
    for i in range(5):
        q.submit(_job(i))
    assert q.flush(5)
    assert sum("emb_00" in r for r in got) == fake.seen == round(5 * rate)


def test_a_failing_embedder_costs_the_embeddings_not_the_rows() -> None:
    got: list[dict[str, Any]] = []
    q = CaptureQueue(
        got.extend,
        flush_interval_s=0.01,
        embedder=_CountingEmbedder(fail=True),
        embedding_sample_rate=1.0,
    )
    for i in range(3):
        q.submit(_job(i))
    assert q.flush(5)
    assert len(got) == 3 and not any("emb_00" in r for r in got) and q.dropped_rows == 0


def test_an_embedding_rate_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"embedding_sample_rate has value 1\.5"):
        CaptureQueue(lambda rows: None, embedding_sample_rate=1.5)


# --- the verdict ------------------------------------------------------------------------------


def _frames(
    rng: np.random.Generator, shift: float, n_ref: int = 200, n_cur: int = 60, embedded: int = 60
) -> tuple[pd.DataFrame, pd.DataFrame]:
    def frame(n: int, mean: float, with_emb: int) -> pd.DataFrame:
        out = pd.DataFrame(
            {"brightness": rng.normal(120, 20, n), "pred_count": rng.poisson(2, n).astype(float)}
        )
        emb = rng.normal(mean, 1.0, size=(n, EMBEDDING_DIMS))
        emb[with_emb:] = np.nan  # rows the capture did not embed
        return pd.concat([out, pd.DataFrame(emb, columns=list(EMBEDDING_COLUMNS))], axis=1)

    return frame(n_ref, 0.0, n_ref), frame(n_cur, shift, embedded)


def test_the_embedding_is_one_holm_hypothesis_of_the_family() -> None:
    scored = [(f"f{i}", stats.KS, 0.5) for i in range(7)]
    groups = {"input": [f"f{i}" for i in range(7)], "embedding": list(EMBEDDING_COLUMNS)}
    # Eight hypotheses: Holm's first level is 0.01 / 8 = 0.00125.
    caught = stats.judge([*scored, (stats.EMBEDDING, stats.MMD, 0.001)], {}, groups=groups)
    kept = stats.judge([*scored, (stats.EMBEDDING, stats.MMD, 0.002)], {}, groups=groups)
    assert caught.drifted and caught.groups == {"input": 0.0, "embedding": 1.0}
    assert caught.features[-1].threshold == pytest.approx(0.01 / 8)
    assert not kept.drifted and kept.groups == {"input": 0.0, "embedding": 0.0}


def test_decide_tests_embedding_columns_together_never_one_by_one() -> None:
    rng = np.random.default_rng(0)
    ref, cur = _frames(rng, shift=0.5)
    cols = stats.feature_columns(ref, cur)
    assert cols == ["brightness", "pred_count"]
    groups = {"input": ["brightness"], "prediction": ["pred_count"], "embedding": ["emb_00"]}
    judged = stats.decide(ref, cur, cols, groups=groups, embedding=list(EMBEDDING_COLUMNS))
    assert [f.name for f in judged.features] == ["brightness", "pred_count", "embedding"]
    assert judged.features[-1].method == stats.MMD and judged.features[-1].drifted
    assert judged.groups == {"input": 0.0, "prediction": 0.0, "embedding": 1.0}


def test_too_few_embedded_rows_leave_the_embedding_out() -> None:
    rng = np.random.default_rng(1)
    ref, cur = _frames(rng, shift=2.0, embedded=stats.MIN_EMBEDDED_ROWS - 1)
    judged = stats.decide(ref, cur, ["brightness"], embedding=list(EMBEDDING_COLUMNS))
    assert [f.name for f in judged.features] == ["brightness"]


@pytest.mark.parametrize(("shift", "drifted"), [(0.0, False), (0.6, True)])
def test_compute_drift_reports_the_embedding_group(
    tmp_path: Path, shift: float, drifted: bool
) -> None:
    rng = np.random.default_rng(2)
    ref, cur = _frames(rng, shift=shift, embedded=40)  # 20 current rows without an embedding
    html = tmp_path / "report.html"
    verdict = compute_drift(
        ref,
        cur,
        groups={
            "input": ["brightness"],
            "prediction": ["pred_count"],
            "embedding": list(EMBEDDING_COLUMNS),
        },
        html_path=html,
    )
    names = [f.name for f in verdict.features]
    assert names == ["brightness", "pred_count", "embedding"]
    emb = verdict.features[-1]
    assert emb.method == stats.MMD and emb.p_value == emb.score and emb.drifted is drifted
    assert verdict.group_shares["embedding"] == float(drifted)
    assert verdict.status == ("drift" if drifted else "no_drift")
    assert html.is_file()


def test_compute_drift_shows_evidently_s_embedding_panel_when_every_row_is_embedded(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(3)
    ref, cur = _frames(rng, shift=1.0, embedded=60)
    html = tmp_path / "report.html"
    verdict = compute_drift(ref, cur, html_path=html)
    assert verdict.features[-1].name == "embedding" and verdict.features[-1].drifted
    assert "Drift in embeddings" in html.read_text()
