"""Decode and check what clients upload: images (bytes or base64) and clips (video or frames).

Every refusal is a 4xx with a stable code. Sizes are checked *before* decoding (bytes first,
then the pixel count read from the header) so a decompression bomb is refused cheaply.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import tempfile

import cv2
import numpy as np

from deployments.images import EncodedImage, to_rgb
from serving.config import LimitsSpec
from serving.errors import (
    EmptyBody,
    ImageTooLarge,
    InvalidBase64,
    PayloadTooLarge,
    TooManyFrames,
    UndecodableVideo,
)
from serving.pipelines.ops import Clip

DEFAULT_FPS = 10.0


def decode_b64(text: object, field: str) -> bytes:
    if not isinstance(text, str) or not text:
        raise InvalidBase64(f"field {field!r} must be a non-empty base64 string")
    if text.startswith("data:") and "," in text:  # data URL: data:image/png;base64,....
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidBase64(f"field {field!r} is not valid base64") from None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header only (None when the header can't be read)."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            return int(w), int(h)
    except Exception:
        return None


def encoded_image(data: bytes, limits: LimitsSpec) -> EncodedImage:
    """Check an upload's bytes and header; its pixels stay encoded (decoded where used).

    An image whose header does not give its size is decoded here, once, to check it."""
    if not data:
        raise EmptyBody("the image is empty (0 bytes)")
    if len(data) > limits.max_image_bytes:
        raise ImageTooLarge(
            f"image is {len(data)} bytes; the limit is {limits.max_image_bytes} bytes",
            size=len(data),
            limit=limits.max_image_bytes,
        )
    size = image_size(data)
    if size is None:
        arr = EncodedImage(data, 0, 0).decode()
        size = (arr.shape[1], arr.shape[0])
    if size[0] * size[1] > limits.max_image_pixels:
        raise ImageTooLarge(
            f"image has {size[0] * size[1]} pixels; the limit is {limits.max_image_pixels} pixels",
            pixels=size[0] * size[1],
            limit=limits.max_image_pixels,
        )
    return EncodedImage(data, *size)


def decode_image(data: bytes, limits: LimitsSpec) -> np.ndarray:
    """Bytes of an encoded image -> RGB uint8 array [H, W, 3] (full size)."""
    return encoded_image(data, limits).decode()


def _fit(frame: np.ndarray, max_side: int) -> np.ndarray:
    scale = max_side / max(frame.shape[:2])
    if scale >= 1:
        return frame
    return cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def decode_video(data: bytes, limits: LimitsSpec) -> Clip:
    """Bytes of a video file -> Clip (RGB frames + fps), refusing clips over the frame limit."""
    if not data:
        raise EmptyBody("the video is empty (0 bytes)")
    if len(data) > limits.max_video_bytes:
        raise PayloadTooLarge(
            f"video is {len(data)} bytes; the limit is {limits.max_video_bytes} bytes"
        )
    # OpenCV's demuxers read from a path, not from memory.
    fd, path = tempfile.mkstemp(suffix=".video")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        cap = cv2.VideoCapture(path)
        try:
            if not cap.isOpened():
                raise UndecodableVideo(f"could not open the {len(data)}-byte upload as a video")
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            frames: list[np.ndarray] = []
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                if len(frames) >= limits.max_frames:
                    raise TooManyFrames(
                        f"video has more than {limits.max_frames} frames (the limit)",
                        limit=limits.max_frames,
                    )
                frames.append(_fit(to_rgb(frame), limits.max_frame_side))
        finally:
            cap.release()
    finally:
        os.unlink(path)
    if not frames:
        raise UndecodableVideo(f"the {len(data)}-byte upload has no decodable video frames")
    return Clip(frames=frames, fps=fps if 0 < fps < 1000 else DEFAULT_FPS)


def frames_clip(frames: list[bytes], fps: float | None, limits: LimitsSpec) -> Clip:
    if not frames:
        raise EmptyBody("the clip has no frames")
    if len(frames) > limits.max_frames:
        raise TooManyFrames(
            f"clip has {len(frames)} frames; the limit is {limits.max_frames}",
            frames=len(frames),
            limit=limits.max_frames,
        )
    decoded = [_fit(decode_image(f, limits), limits.max_frame_side) for f in frames]
    sizes = {f.shape[:2] for f in decoded}
    if len(sizes) > 1:
        first = decoded[0].shape[:2]
        decoded = [
            f if f.shape[:2] == first else cv2.resize(f, (first[1], first[0])) for f in decoded
        ]
    return Clip(frames=decoded, fps=float(fps) if fps and fps > 0 else DEFAULT_FPS)
