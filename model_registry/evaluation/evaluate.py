"""Evaluate registered detection versions on the person-detection set, and pick the best one.

``canaryserve models evaluate MODEL`` calls :func:`evaluate_model`: every version of MODEL whose
task is detection (or the one asked for) is resolved to a verified local copy, run as the plain
:class:`deployments.models.detector_model.DetectorModel` (no Ray, CPU unless configured) on
:func:`model_registry.evaluation.detection_set.detection_set`, one image per call after one
warm-up call, and scored by :mod:`model_registry.evaluation.detection_metrics`. The scores go
to the registry with :meth:`model_registry.store.ModelStore.log_evaluation` (for MLflow: a run
in the ``evaluation`` experiment and ``eval.*`` tags on the version).

:func:`best_version` is the rule the bootstrap uses to choose a default champion: the best
recall among the versions precise enough, so a version that finds more people by also finding
cats does not win.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_registry.evaluation.detection_metrics import SetScore, score_image
from model_registry.evaluation.detection_set import DetectionSet, detection_set
from model_registry.store import ModelRef, ModelStore, ModelVersionInfo
from serving.errors import BadRequest

SET_NAME = "person-detection"


class NotADetectionModel(BadRequest):
    """``models evaluate`` on a model (or version) whose task is not detection."""

    code = "not_a_detection_model"


@dataclass(frozen=True)
class VersionResult:
    name: str
    version: int
    score: SetScore
    set_sha256: str
    run_id: str | None = None

    @property
    def metrics(self) -> dict[str, float]:
        return self.score.metrics()

    @property
    def precision(self) -> float:
        return self.score.precision

    @property
    def recall(self) -> float:
        return self.score.recall

    @property
    def ms_per_image(self) -> float:
        return self.score.ms_per_image

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "version": self.version,
            "set": SET_NAME,
            "set_sha256": self.set_sha256,
            "run_id": self.run_id,
            "metrics": self.metrics,
            "images": [i.to_dict() for i in self.score.images],
        }


def evaluate_dir(model_dir: Path, dataset: DetectionSet | None = None) -> SetScore:
    """Score the detection model directory ``model_dir`` on ``dataset`` (default: the set)."""
    from deployments.models.detector_model import DetectorModel
    from deployments.runtime import RuntimeSpec
    from model_registry.manifest import Manifest

    data = dataset or detection_set()
    manifest = Manifest.load(model_dir)
    if manifest.task != "detection":
        raise NotADetectionModel(
            f"{model_dir}: task {manifest.task!r} is not 'detection'", task=manifest.task
        )
    model = DetectorModel(Path(model_dir), manifest, RuntimeSpec())
    if data.items:
        model.predict([data.items[0].image])  # warm-up: first-call allocations are not timed
    scores = []
    for item in data.items:
        start = time.perf_counter()
        (detections,) = model.predict([item.image])
        ms = (time.perf_counter() - start) * 1000.0
        scores.append(score_image(item.name, item.tags, item.boxes, item.box_tags, detections, ms))
    return SetScore(tuple(scores))


def detection_versions(
    store: ModelStore, name: str, version: int | None = None
) -> list[ModelVersionInfo]:
    """The versions to evaluate; UnknownModel / UnknownModelVersion from the store, and
    NotADetectionModel when the version asked for (or every version) is not detection."""
    if version is not None:
        info = store.get(ModelRef(name, version=version))
        if info.task != "detection":
            raise NotADetectionModel(
                f"{info.ref} has task {info.task!r}; only detection versions can be evaluated "
                "on the person-detection set",
                model=name,
                version=version,
                task=info.task,
            )
        return [info]
    versions = store.list_models().get(name)
    if not versions:
        store.aliases(name)  # raises the store's UnknownModel, with the names it has
        return []
    chosen = [v for v in versions if v.task == "detection"]
    if not chosen:
        tasks = sorted({str(v.task) for v in versions})
        raise NotADetectionModel(
            f"model {name!r} has no detection version (tasks: {tasks}); only detection models "
            "can be evaluated on the person-detection set",
            model=name,
            tasks=tasks,
        )
    return chosen


def evaluate_model(
    store: ModelStore,
    name: str,
    version: int | None = None,
    *,
    log: bool = True,
    dataset: DetectionSet | None = None,
) -> list[VersionResult]:
    """Evaluate (and, with ``log``, record in the registry) the detection versions of
    ``name``, oldest first."""
    data = dataset or detection_set()
    results = []
    for info in detection_versions(store, name, version):
        resolved = store.resolve(info.ref)
        result = VersionResult(
            info.name, info.version, evaluate_dir(resolved.path, data), data.sha256
        )
        if log:
            run_id = store.log_evaluation(
                info.name,
                info.version,
                result.metrics,
                params={"set": SET_NAME, "set_sha256": data.sha256, "images": len(data.items)},
                details=result.to_dict(),
            )
            result = VersionResult(result.name, result.version, result.score, data.sha256, run_id)
        results.append(result)
    return results


def best_version(
    results: Iterable[VersionResult] | Mapping[int, VersionResult], min_precision: float = 0.9
) -> int | None:
    """The version with the best recall among those with precision >= ``min_precision``
    (ties: fewer ms per image, then the lower version); None when no version qualifies."""
    items = list(results.values() if isinstance(results, Mapping) else results)
    ok = [r for r in items if r.precision >= min_precision]
    if not ok:
        return None
    return min(ok, key=lambda r: (-r.recall, r.ms_per_image, r.version)).version
