"""best_version's rule, which versions get evaluated, and the MLflow record of an evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployments.types import Detection
from model_registry.evaluation.detection_metrics import SetScore, score_image
from model_registry.evaluation.detection_set import DetectionSet, detection_set
from model_registry.evaluation.evaluate import (
    NotADetectionModel,
    VersionResult,
    best_version,
    detection_versions,
    evaluate_dir,
    evaluate_model,
)
from model_registry.mlflow_store import EVAL_EXPERIMENT, MlflowModelStore
from serving.errors import UnknownModel
from tests.unit.model_registry.test_validate import write_detector_dir

T = (0.0, 0.0, 100.0, 100.0)
MISS = (500.0, 500.0, 600.0, 600.0)


def result(version: int, found: int, false_positives: int, ms: float) -> VersionResult:
    """A version that found ``found`` of 10 people, with ``false_positives`` extra boxes."""
    dets = [Detection(T, 0.9)] * min(found, 1) + [Detection(MISS, 0.5)] * false_positives
    images = [score_image("a", ("single",), [T], [()], dets, ms)]
    images += [
        score_image(f"b{k}", ("single",), [T], [()], [Detection(T, 0.9)] if k < found - 1 else [],
                    ms)
        for k in range(9)
    ]  # fmt: skip
    return VersionResult("detector", version, SetScore(tuple(images)), "sha")


def test_best_version_is_the_best_recall_among_the_precise_ones() -> None:
    precise = result(1, found=6, false_positives=0, ms=20)  # recall 0.6, precision 1.0
    finds_more_but_cats = result(2, found=9, false_positives=3, ms=20)  # 0.9, 0.75
    better = result(3, found=8, false_positives=0, ms=50)
    assert (finds_more_but_cats.recall, finds_more_but_cats.precision) == (0.9, 0.75)
    assert best_version([precise, finds_more_but_cats, better]) == 3
    assert best_version([precise, finds_more_but_cats]) == 1
    assert best_version([precise, finds_more_but_cats], min_precision=0.7) == 2
    assert best_version({1: precise, 2: finds_more_but_cats}, min_precision=0.7) == 2
    assert best_version([finds_more_but_cats]) is None
    assert best_version([]) is None


def test_best_version_ties_go_to_the_faster_then_the_older() -> None:
    slow, fast, fast_too = result(1, 8, 0, 50), result(2, 8, 0, 20), result(3, 8, 0, 20)
    assert best_version([slow, fast, fast_too]) == 2
    assert best_version([fast_too, slow]) == 3


def test_evaluate_dir_refuses_a_non_detection_manifest(tmp_path: Path) -> None:
    model_dir = write_detector_dir(tmp_path / "m")
    text = (model_dir / "manifest.yaml").read_text().replace("task: detection", "task: ocr")
    (model_dir / "manifest.yaml").write_text(text)
    with pytest.raises(NotADetectionModel, match="'ocr'"):
        evaluate_dir(model_dir)


def test_evaluate_model_logs_a_run_and_version_tags(
    tmp_path: Path, store: MlflowModelStore
) -> None:
    """On a tiny random network: the numbers are meaningless, the record is what is checked."""
    store.register(write_detector_dir(tmp_path / "m"))
    small = DetectionSet(detection_set().items[:3], "abc123")
    (r,) = evaluate_model(store, "detector", dataset=small)
    assert len(r.score.images) == 3 and r.run_id
    tags = store.get("detector/1").tags
    assert tags["eval.run_id"] == r.run_id and tags["eval.set_sha256"] == "abc123"
    assert float(tags["eval.recall"]) == r.metrics["recall"]
    run = store._client.get_run(r.run_id)
    assert (
        run.info.experiment_id
        == store._client.get_experiment_by_name(EVAL_EXPERIMENT).experiment_id
    )
    assert run.data.params["set_sha256"] == "abc123" and run.data.params["images"] == "3"
    path = store._client.download_artifacts(r.run_id, "evaluation.json", str(tmp_path / "dl"))
    assert [i["name"] for i in json.loads(Path(path).read_text())["images"]] == [
        "photo-astronaut", "photo-camera", "photo-coffee"
    ]  # fmt: skip
    (again,) = evaluate_model(store, "detector", dataset=small)  # a second run, tags move on
    assert store.get("detector/1").tags["eval.run_id"] == again.run_id != r.run_id
    assert evaluate_model(store, "detector", dataset=small, log=False)[0].run_id is None


def test_detection_versions_errors(tmp_path: Path, store: MlflowModelStore) -> None:
    with pytest.raises(UnknownModel, match="'nosuch'"):
        detection_versions(store, "nosuch")
    store.register(write_detector_dir(tmp_path / "m"))
    assert [v.version for v in detection_versions(store, "detector")] == [1]
    assert [v.version for v in detection_versions(store, "detector", 1)] == [1]
