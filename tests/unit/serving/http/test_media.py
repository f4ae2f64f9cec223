from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest

from serving.config import LimitsSpec
from serving.errors import (
    EmptyBody,
    ImageTooLarge,
    InvalidBase64,
    TooManyFrames,
    UndecodableImage,
    UndecodableVideo,
)
from serving.http.media import decode_b64, decode_image, decode_video, frames_clip

LIMITS = LimitsSpec()


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def test_decode_png_gives_rgb() -> None:
    bgr = np.zeros((20, 30, 3), np.uint8)
    bgr[..., 2] = 255  # red in BGR
    rgb = decode_image(_png(bgr), LIMITS)
    assert rgb.shape == (20, 30, 3) and rgb[0, 0].tolist() == [255, 0, 0]


def test_grayscale_and_alpha_become_rgb() -> None:
    assert decode_image(_png(np.full((8, 8), 7, np.uint8)), LIMITS).shape == (8, 8, 3)
    assert decode_image(_png(np.zeros((8, 8, 4), np.uint8)), LIMITS).shape == (8, 8, 3)


def test_empty_and_garbage() -> None:
    with pytest.raises(EmptyBody):
        decode_image(b"", LIMITS)
    with pytest.raises(UndecodableImage, match="17-byte"):
        decode_image(b"this is not a png", LIMITS)


def test_byte_limit_before_decoding() -> None:
    with pytest.raises(ImageTooLarge, match="limit is 10 bytes"):
        decode_image(b"x" * 11, LimitsSpec(max_image_bytes=10))


def test_pixel_limit_from_header() -> None:
    data = _png(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ImageTooLarge, match="10000 pixels"):
        decode_image(data, LimitsSpec(max_image_pixels=9999))


def test_base64() -> None:
    assert decode_b64(base64.b64encode(b"abc").decode(), "f") == b"abc"
    assert decode_b64("data:image/png;base64," + base64.b64encode(b"abc").decode(), "f") == b"abc"
    with pytest.raises(InvalidBase64, match="'image_base64'"):
        decode_b64("***", "image_base64")
    with pytest.raises(InvalidBase64):
        decode_b64(12, "image_base64")


def _video(path, frames: int, size=(64, 48)) -> bytes:  # type: ignore[no-untyped-def]
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, size)
    for i in range(frames):
        w.write(np.full((size[1], size[0], 3), i * 10 % 255, np.uint8))
    w.release()
    return path.read_bytes()


def test_video_roundtrip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    clip = decode_video(_video(tmp_path / "a.avi", 5), LIMITS)
    assert len(clip.frames) == 5 and clip.size == (64, 48) and clip.fps == pytest.approx(12.0)


def test_video_frame_limit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TooManyFrames, match="more than 3 frames"):
        decode_video(_video(tmp_path / "a.avi", 5), LimitsSpec(max_frames=3))


def test_video_garbage() -> None:
    with pytest.raises(UndecodableVideo):
        decode_video(b"not a video at all" * 10, LIMITS)
    with pytest.raises(EmptyBody):
        decode_video(b"", LIMITS)


def test_frames_clip() -> None:
    a, b = _png(np.zeros((10, 12, 3), np.uint8)), _png(np.zeros((20, 24, 3), np.uint8))
    clip = frames_clip([a, b], 5, LIMITS)
    assert clip.fps == 5 and {f.shape for f in clip.frames} == {(10, 12, 3)}
    with pytest.raises(TooManyFrames):
        frames_clip([a] * 4, None, LimitsSpec(max_frames=3))
    with pytest.raises(EmptyBody):
        frames_clip([], None, LIMITS)


def test_large_frames_are_downscaled() -> None:
    big = _png(np.zeros((100, 400, 3), np.uint8))
    clip = frames_clip([big], None, LimitsSpec(max_frame_side=200))
    assert clip.frames[0].shape == (50, 200, 3)
