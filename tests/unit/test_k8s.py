"""The KubeRay manifest points at code that exists and at the same config format."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_rayservice_import_path_resolves() -> None:
    doc = yaml.safe_load((ROOT / "k8s" / "rayservice.yaml").read_text())
    assert doc["kind"] == "RayService"
    serve_cfg = yaml.safe_load(doc["spec"]["serveConfigV2"])
    (app,) = serve_cfg["applications"]
    module, attr = app["import_path"].split(":")
    builder = getattr(importlib.import_module(module), attr)
    assert callable(builder)
    assert app["args"]["config"].endswith(".yaml")
    head = doc["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {e["name"] for e in head["env"]} >= {"MLFLOW_TRACKING_URI", "CANARYSERVE_DATA_DIR"}
