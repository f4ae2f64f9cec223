from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from deployments.types import ActionPrediction, Detection, TextLine
from drift.features import (
    FEATURE_MAX_SIDE,
    IMAGE_FEATURES,
    action_features,
    clip_features,
    detection_features,
    image_features,
    ocr_features,
)


def _scene(seed: int = 0) -> np.ndarray:
    """A textured, colourful 640x480 RGB frame."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    cv2.rectangle(image, (100, 100), (300, 300), (255, 0, 0), -1)
    cv2.circle(image, (450, 250), 80, (0, 200, 50), -1)
    return image


def test_flat_gray_image_has_zero_contrast_sharpness_and_colorfulness() -> None:
    feats = image_features(np.full((480, 640, 3), 128, np.uint8))
    assert set(feats) == set(IMAGE_FEATURES)
    assert feats["brightness"] == pytest.approx(128.0)
    assert feats["contrast"] == pytest.approx(0.0)
    assert feats["sharpness"] == pytest.approx(0.0)
    assert feats["colorfulness"] == pytest.approx(0.0)
    assert (feats["width"], feats["height"]) == (640.0, 480.0)
    assert feats["aspect"] == pytest.approx(640 / 480)


def test_darkened_copy_is_less_bright() -> None:
    image = _scene()
    dark = (image * 0.5).astype(np.uint8)
    assert image_features(dark)["brightness"] < image_features(image)["brightness"] - 30


def test_blurred_copy_is_less_sharp() -> None:
    image = _scene()
    blurred = cv2.GaussianBlur(image, (9, 9), 3)
    assert image_features(blurred)["sharpness"] < 0.2 * image_features(image)["sharpness"]


def test_colorful_image_beats_its_gray_copy() -> None:
    image = _scene()
    gray = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    assert image_features(gray)["colorfulness"] == pytest.approx(0.0, abs=1e-6)
    assert image_features(image)["colorfulness"] > 50


def test_grayscale_input_is_accepted() -> None:
    feats = image_features(np.full((10, 20), 50, np.uint8))
    assert feats["brightness"] == pytest.approx(50.0)
    assert feats["aspect"] == pytest.approx(2.0)


def test_bad_shape_is_rejected_with_the_shape() -> None:
    with pytest.raises(ValueError, match=r"\(4, 4, 2\)"):
        image_features(np.zeros((4, 4, 2), np.uint8))


def test_large_images_are_measured_at_a_fixed_scale_but_keep_their_size() -> None:
    # The cost must not grow with the upload: a 1024x768 frame is measured as its 256x192
    # copy (the same light, focus and colour numbers), while width/height stay the original's.
    # The copy is made as a reduced JPEG decode would (1/2, shorter side still >= 256), then
    # area-averaged to 256.
    big = cv2.resize(_scene(), (1024, 768), interpolation=cv2.INTER_CUBIC)
    half = cv2.resize(big, (512, 384), interpolation=cv2.INTER_AREA)
    small = cv2.resize(half, (FEATURE_MAX_SIDE, 192), interpolation=cv2.INTER_AREA)
    got, expected = image_features(big), image_features(small)
    assert (got["width"], got["height"], got["aspect"]) == (1024.0, 768.0, 1024 / 768)
    for name in ("brightness", "contrast", "sharpness", "colorfulness"):
        assert got[name] == pytest.approx(expected[name], rel=1e-6), name


def test_blur_still_shows_after_downscaling() -> None:
    big = cv2.resize(_scene(), (1280, 960), interpolation=cv2.INTER_CUBIC)
    blurred = cv2.GaussianBlur(big, (0, 0), 6)
    assert image_features(blurred)["sharpness"] < 0.3 * image_features(big)["sharpness"]


def test_clip_features_average_frames_and_add_count_and_fps() -> None:
    frames = [np.full((48, 64, 3), v, np.uint8) for v in (0, 100, 200)]
    feats = clip_features(frames, fps=15)
    assert feats["frame_count"] == 3.0
    assert feats["fps"] == 15.0
    assert feats["brightness"] == pytest.approx(100.0)


def test_clip_features_reject_empty_clip_and_bad_fps() -> None:
    with pytest.raises(ValueError, match="empty clip"):
        clip_features([], fps=10)
    with pytest.raises(ValueError, match="-1"):
        clip_features([np.zeros((4, 4, 3), np.uint8)], fps=-1)


def test_detection_features() -> None:
    dets = [
        Detection(box=(0, 0, 50, 40), score=0.9),
        Detection(box=(50, 40, 100, 80), score=0.5),
        Detection(box=(90, 70, 500, 500), score=0.7),  # clipped to 100x80
    ]
    feats = detection_features(dets, image_size=(100, 80))
    assert feats["count"] == 3.0
    assert feats["mean_confidence"] == pytest.approx(0.7)
    assert feats["min_confidence"] == pytest.approx(0.5)
    assert feats["box_area_share"] == pytest.approx((2000 + 2000 + 100) / 8000)


def test_detection_features_without_detections() -> None:
    feats = detection_features([], image_size=(100, 80))
    assert feats["count"] == 0.0
    assert feats["box_area_share"] == 0.0
    assert math.isnan(feats["mean_confidence"])


def test_ocr_features() -> None:
    box = (0.0, 0.0, 1.0, 1.0)
    poly = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))
    lines = [TextLine("abc", 0.8, poly, box), TextLine("de", 0.6, poly, box)]
    assert ocr_features(lines) == pytest.approx(
        {"line_count": 2.0, "text_length": 5.0, "mean_confidence": 0.7}
    )
    assert ocr_features([])["line_count"] == 0.0


def test_action_features_take_the_most_confident_prediction() -> None:
    preds = [ActionPrediction("walk", 0.6), ActionPrediction("fall", 0.9)]
    assert action_features(preds) == {
        "label": "fall",
        "confidence": 0.9,
        "prediction_count": 2.0,
    }
    assert action_features(ActionPrediction("sit", 0.4))["label"] == "sit"
    assert action_features([])["label"] == "none"
