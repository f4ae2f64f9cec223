"""DetectorModel on the real BlazePose reference versions: letterbox, tiling, batching, checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data

from deployments.loader import load_model
from deployments.models.blazepose import KEYPOINT_NAMES
from deployments.models.detector_model import DetectorModel, Tiling, letterbox
from deployments.runtime import RuntimeSpec
from model_registry.manifest import InputSpec, Manifest
from serving.errors import InvalidInput, ManifestError, ModelValidationError

ASTRONAUT = skimage.data.astronaut()  # 512x512, one person


@pytest.fixture(scope="module")
def models(detector_dirs: dict[str, Path]) -> dict[str, DetectorModel]:
    return {v: load_model(d) for v, d in detector_dirs.items()}  # type: ignore[misc]


def four_astronauts() -> np.ndarray:
    """1024x1024: four astronauts in a 2x2 grid, each too small for the whole-image pass."""
    row = np.concatenate([ASTRONAUT, ASTRONAUT], axis=1)
    return np.concatenate([row, row], axis=0)


def centre(box: tuple[float, float, float, float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def test_finds_the_astronaut_on_her_head_and_upper_body(models) -> None:
    (dets,) = models["v1"].predict([ASTRONAUT])
    assert len(dets) == 1
    det = dets[0]
    assert det.label == "person" and det.score > 0.7
    cx, cy = centre(det.box)
    assert 150 < cx < 290 and 100 < cy < 260, det.box
    assert [k.name for k in det.keypoints] == list(KEYPOINT_NAMES)
    assert det.body_box is not None
    x1, y1, x2, y2 = det.body_box  # the full-body square covers most of the portrait
    assert x1 < 60 and y1 < 80 and x2 > 450 and y2 == 512


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_no_person_no_detection(models, version: str, name: str) -> None:
    assert models[version].predict([getattr(skimage.data, name)()]) == [[]]


def test_one_ort_call_for_a_whole_batch(models) -> None:
    model = models["v1"]
    images = [ASTRONAUT, skimage.data.coffee(), skimage.data.chelsea(), ASTRONAUT[::2, ::2]]
    before = model.ort_calls
    batch = model.predict(images)
    assert model.ort_calls == before + 1
    assert [len(r) for r in batch] == [1, 0, 0, 1]
    alone = model.predict([ASTRONAUT])[0][0]
    np.testing.assert_allclose(batch[0][0].box, alone.box, atol=1e-3)
    # The half-size copy is found at half the coordinates.
    np.testing.assert_allclose(np.array(batch[3][0].box) * 2, alone.box, atol=8)


def test_tiles_of_every_image_share_one_call(models) -> None:
    model = models["v2"]
    before = model.ort_calls
    results = model.predict([four_astronauts(), ASTRONAUT, skimage.data.coffee()])
    assert model.ort_calls == before + 1
    assert len(results) == 3 and len(results[1]) == 1 and results[2] == []


def test_tiling_finds_people_the_whole_image_misses(models) -> None:
    scene = four_astronauts()
    whole = models["v1"].predict([scene])[0]
    tiled = models["v2"].predict([scene])[0]
    assert len(whole) < len(tiled) == 4
    quadrants = {(int(cx // 512), int(cy // 512)) for cx, cy in (centre(d.box) for d in tiled)}
    assert quadrants == {(0, 0), (1, 0), (0, 1), (1, 1)}  # one per astronaut, none merged
    for det in tiled:  # each box sits on its astronaut's head/chest, not across two people
        cx, cy = centre(det.box)
        assert 120 < cx % 512 < 330 and 60 < cy % 512 < 300, det.box


def test_tiling_side_by_side_finds_at_least_as_many(models) -> None:
    scene = np.concatenate([ASTRONAUT, ASTRONAUT], axis=1)
    whole, tiled = (models[v].predict([scene])[0] for v in ("v1", "v2"))
    assert len(tiled) == 2 and len(whole) <= len(tiled)
    assert sorted(int(centre(d.box)[0] // 512) for d in tiled) == [0, 1]


def test_v1_and_v2_differ_on_the_same_image(models) -> None:
    (a,), (b,) = models["v1"].predict([ASTRONAUT]), models["v2"].predict([ASTRONAUT])
    assert len(a) == len(b) == 1
    assert np.abs(np.array(a[0].box) - np.array(b[0].box)).max() > 1.0


def test_tiling_windows_overlap_and_cover_the_image() -> None:
    windows = Tiling(grid=(2, 2), overlap=0.25, include_full=True).windows(700, 400)
    assert windows[0] == (0, 0, 700, 400) and len(windows) == 5
    tiles = windows[1:]
    assert tiles[0][:2] == (0, 0) and tiles[-1][2:] == (700, 400)
    left, right = tiles[0], tiles[1]
    assert right[0] < left[2]  # overlap
    assert (left[2] - right[0]) == pytest.approx(0.25 * (left[2] - left[0]), abs=1)
    assert Tiling(grid=(1, 1), include_full=True).windows(50, 40) == [(0, 0, 50, 40)]


def test_letterbox_keeps_aspect_and_centres() -> None:
    image = np.full((100, 200, 3), 255, np.uint8)
    canvas, scale, px, py = letterbox(image, 224, 224)
    assert canvas.shape == (224, 224, 3) and scale == pytest.approx(1.12)
    assert (px, py) == (0, 56)
    assert canvas[:56].max() == 0 and canvas[-56:].max() == 0 and canvas[56:168].min() == 255


def test_letterbox_resize_modes() -> None:
    import cv2

    def placed(canvas: np.ndarray, w: int, h: int) -> np.ndarray:
        py, px = (canvas.shape[0] - h) // 2, (canvas.shape[1] - w) // 2
        return canvas[py : py + h, px : px + w]

    # 512 -> 384: 'area' averages, 'linear' is bilinear (as Ultralytics trains).
    area, *_ = letterbox(ASTRONAUT, 384, 384, resize="area")
    linear, *_ = letterbox(ASTRONAUT, 384, 384, resize="linear")
    assert np.array_equal(area, cv2.resize(ASTRONAUT, (384, 384), interpolation=cv2.INTER_AREA))
    assert np.array_equal(linear, cv2.resize(ASTRONAUT, (384, 384), interpolation=cv2.INTER_LINEAR))
    assert not np.array_equal(area, linear)
    # Below half size bilinear would skip pixels: 'linear' averages there too.
    small, *_ = letterbox(ASTRONAUT, 200, 100, resize="linear")
    want = cv2.resize(ASTRONAUT, (100, 100), interpolation=cv2.INTER_AREA)
    assert np.array_equal(placed(small, 100, 100), want)


def test_invalid_images_are_refused(models) -> None:
    with pytest.raises(InvalidInput, match="dtype float32"):
        models["v1"].predict([np.zeros((32, 32, 3), np.float32)])
    with pytest.raises(InvalidInput, match=r"shape \[32, 32, 2\]"):
        models["v1"].predict([np.zeros((32, 32, 2), np.uint8)])
    assert models["v1"].predict([]) == []


def test_grayscale_is_accepted(models) -> None:
    assert len(models["v1"].predict([skimage.data.camera()])[0]) == 1  # the cameraman


def test_example_input_runs(models) -> None:
    model = models["v2"]
    image = model.example_input()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert isinstance(model.predict([image])[0], list)


def test_check_io_accepts_both_versions(models) -> None:
    models["v1"].check_io()
    models["v2"].check_io()
    assert models["v1"].runtime.provider == "CPUExecutionProvider"


def test_check_io_refuses_a_manifest_of_another_size(detector_dirs) -> None:
    manifest = Manifest.load(detector_dirs["v1"])
    wrong = manifest.model_copy(update={"input": InputSpec(width=256, height=256)})
    model = DetectorModel(detector_dirs["v1"], wrong, RuntimeSpec())
    with pytest.raises(ModelValidationError, match=r"input has shape") as err:
        model.check_io()
    assert "boxes has shape ['N', 2254, 12], expected [batch, *[2944, 12]]" in str(err.value)


def test_unknown_postprocess_key_is_a_manifest_error(detector_dirs) -> None:
    manifest = Manifest.load(detector_dirs["v1"])
    bad = manifest.model_copy(update={"postprocess": {"decoder": "blazepose", "tilling": {}}})
    with pytest.raises(ManifestError, match="tilling"):
        DetectorModel(detector_dirs["v1"], bad, RuntimeSpec())
