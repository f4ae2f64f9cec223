"""`canaryserve models evaluate MODEL` on a real registry holding the bootstrap's detector v1/v2.

The numbers asserted were measured first (see the model_registry.evaluation docstrings) and are
checked against the set's truth, per image, so they cannot pass by accident: v2's tiles find
all four astronauts of the 2x2 scene (four head boxes, each on a different astronaut) where v1
finds one; neither version's full-body square localises a person in it at IoU >= 0.5.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from model_registry import settings
from model_registry.mlflow_store import EVAL_EXPERIMENT, MlflowModelStore
from model_registry.references.bootstrap import Reference, built_model_dir
from serving.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[4]


@pytest.fixture
def registry(store: MlflowModelStore, monkeypatch: pytest.MonkeyPatch) -> MlflowModelStore:
    """detector v1 and v2, and action v1, from the bootstrap's build cache (built if absent)."""
    if not os.environ.get(settings.ENV_CACHE_DIR):
        monkeypatch.setenv(settings.ENV_CACHE_DIR, str(REPO / ".canaryserve" / "cache"))
    from model_registry.references.action_training import build_action_v1
    from model_registry.references.detector import build_detector_v1, build_detector_v2

    # The bootstrap's own cache keys, without depending on the rest of its reference list.
    for ref in (
        Reference("detector", 1, "detector-v1", "", build_detector_v1),
        Reference("detector", 2, "detector-v2", "", build_detector_v2),
        Reference("action", 1, "action-v1", "", build_action_v1),
    ):
        store.register(built_model_dir(ref))
    return store


def _images(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in result["images"]}


def test_evaluate_every_detector_version_and_log_to_mlflow(registry: MlflowModelStore) -> None:
    out = runner.invoke(app, ["models", "evaluate", "detector", "--json"])
    assert out.exit_code == 0, out.output
    v1, v2 = json.loads(out.output)
    assert (v1["version"], v2["version"]) == (1, 2)
    grid1, grid2 = _images(v1)["grid-2x2-astronaut"], _images(v2)["grid-2x2-astronaut"]
    assert (grid1["predictions"], grid1["found_loose"]) == (1, 1)
    assert (grid2["predictions"], grid2["found_loose"], grid2["truth"]) == (4, 4, 4)
    assert grid1["found"] == grid2["found"] == 0  # the body squares are far wider than a person
    for r in (v1, v2):  # the two source photos: one person each, found at IoU >= 0.5
        for name in ("photo-astronaut", "photo-camera"):
            assert _images(r)[name]["found"] == _images(r)[name]["truth"] == 1
    # v2's extra crops see a person in the rocket photo and a second one on the cameraman's hand
    assert v1["metrics"]["fp_no_person"] == 0 and v2["metrics"]["fp_no_person"] == 1
    assert _images(v2)["photo-camera"]["false_positives"] == 1
    assert v2["metrics"]["recall_loose"] > v1["metrics"]["recall_loose"]
    assert v1["metrics"]["precision"] > v2["metrics"]["precision"]
    assert v1["set_sha256"] == v2["set_sha256"]

    for r in (v1, v2):
        tags = registry.get(f"detector/{r['version']}").tags
        assert float(tags["eval.recall"]) == r["metrics"]["recall"]
        assert float(tags["eval.precision"]) == r["metrics"]["precision"]
        assert tags["eval.set_sha256"] == r["set_sha256"] and tags["eval.run_id"] == r["run_id"]
    client = registry._client
    runs = client.search_runs([client.get_experiment_by_name(EVAL_EXPERIMENT).experiment_id])
    by_version = {run.data.params["version"]: run for run in runs}
    assert sorted(by_version) == ["1", "2"]
    run = by_version["2"]
    assert run.data.params["model"] == "detector" and run.info.status == "FINISHED"
    assert run.data.metrics["recall"] == v2["metrics"]["recall"]


def test_evaluate_one_version_prints_the_table(registry: MlflowModelStore) -> None:
    out = runner.invoke(app, ["models", "evaluate", "detector", "--version", "2"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split()[:3] == ["version", "recall", "prec"]
    assert lines[1].split()[0] == "v2"
    grid = next(line for line in lines if line.startswith("grid-2x2-astronaut"))
    assert grid.split()[1:] == ["0/4", "fp4", "~4"]
    assert "detector/1" not in out.output and "eval.recall" not in registry.get("detector/1").tags


def test_an_action_model_is_refused_with_its_task(registry: MlflowModelStore) -> None:
    out = runner.invoke(app, ["models", "evaluate", "action"])
    assert out.exit_code == 2
    assert "not_a_detection_model" in out.output and "'action'" in out.output
    out = runner.invoke(app, ["models", "evaluate", "action", "--version", "1"])
    assert out.exit_code == 2 and "not_a_detection_model" in out.output


def test_an_unknown_model_or_version_is_not_found(registry: MlflowModelStore) -> None:
    out = runner.invoke(app, ["models", "evaluate", "nosuch"])
    assert out.exit_code == 2 and "unknown_model" in out.output and "'nosuch'" in out.output
    out = runner.invoke(app, ["models", "evaluate", "detector", "--version", "9"])
    assert out.exit_code == 2 and "unknown_model_version" in out.output
