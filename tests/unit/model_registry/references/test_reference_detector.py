"""The two reference detector versions: complete directories, lineage, idempotence, behaviour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data

from deployments.loader import load_model
from model_registry.manifest import Manifest
from model_registry.references.detector import build_detector_v1, build_detector_v2
from model_registry.wheels import sha256_file


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ref-detector")
    return {"v1": build_detector_v1(root / "v1"), "v2": build_detector_v2(root / "v2")}


def test_manifests_describe_the_detector(dirs: dict[str, Path]) -> None:
    for version, path in dirs.items():
        m = Manifest.load(path)
        assert (m.name, m.task, m.labels) == ("detector", "detection", ["person"])
        assert (m.input.width, m.input.height, m.input.layout) == (224, 224, "NHWC")
        assert m.runtimes == ["tensorrt", "cuda", "cpu"]
        assert m.artifact_path(path, "model").is_file()
        assert m.source["package"] == "mediapipe" and m.source["version"] == "0.10.21"
        assert m.source["member"] == "mediapipe/modules/pose_detection/pose_detection.tflite"
        assert m.source["converter"] == "model_registry.references.tflite"
        assert m.source["artifact_sha256"] == sha256_file(m.artifact_path(path, "model"))
        assert m.postprocess["decoder"] == "blazepose"
        assert ("tiling" in m.postprocess) == (version == "v2")
    v2 = Manifest.load(dirs["v2"])
    assert "detector v1" in v2.source["derived_from"] and "tiling 2x2" in v2.source["derivation"]


def test_builders_are_idempotent(dirs: dict[str, Path]) -> None:
    for build, version in ((build_detector_v1, "v1"), (build_detector_v2, "v2")):
        before = {p.name: p.read_bytes() for p in dirs[version].iterdir()}
        build(dirs[version])
        assert {p.name: p.read_bytes() for p in dirs[version].iterdir()} == before


def test_v1_and_v2_give_different_outputs_but_both_find_the_astronaut(dirs) -> None:
    image = skimage.data.astronaut()
    (a,), (b,) = (load_model(dirs[v]).predict([image]) for v in ("v1", "v2"))
    assert len(a) == len(b) == 1
    assert a[0].to_dict() != b[0].to_dict()
    assert np.abs(np.array(a[0].box) - np.array(b[0].box)).max() > 1.0
