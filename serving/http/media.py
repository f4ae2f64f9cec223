"""Decode and check what clients upload: images (bytes or base64) and clips (video or frames).

Every refusal is a 4xx with a stable code. Sizes are checked *before* decoding (bytes first,
then the pixel count read from the header) so a decompression bomb is refused cheaply: only the
formats in :data:`IMAGE_FORMATS` are accepted (by their magic bytes, whatever the client says),
and an image whose header does not give its size is refused, never decoded to find out. The
replicas decode under ``OPENCV_IO_MAX_IMAGE_PIXELS`` too (``deployments.images.decoder_env``),
so an image that
reaches one by another path still cannot make OpenCV allocate past the limit.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import tempfile
import time
from collections.abc import Callable

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
    UndecodableImage,
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


# Format -> magic-byte test. What the models are fed (photos, frames, screenshots); every
# other format OpenCV or Pillow would open (HDR, PFM, PXM, TIFF, SVG, ...) is refused unread.
IMAGE_FORMATS: dict[str, Callable[[bytes], bool]] = {
    "JPEG": lambda b: b.startswith(b"\xff\xd8\xff"),
    "PNG": lambda b: b.startswith(b"\x89PNG\r\n\x1a\n"),
    "WebP": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP",
    "BMP": lambda b: b.startswith(b"BM"),
}


def image_format(data: bytes) -> str | None:
    """The accepted format ``data`` starts like, else None."""
    return next((name for name, test in IMAGE_FORMATS.items() if test(data)), None)


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header only; None when the header can't be read.

    Pillow refuses to even open an image past twice its own pixel limit (179 MP); that is far
    past any limit here, so it reads as "too large", not as "unknown"."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            return int(w), int(h)
    except Image.DecompressionBombError:
        return (Image.MAX_IMAGE_PIXELS or 0) * 2 + 1, 1
    except Exception:
        return None


def encoded_image(data: bytes, limits: LimitsSpec) -> EncodedImage:
    """Check an upload's bytes, format and header; its pixels stay encoded (decoded where
    used, each at the size it needs)."""
    if not data:
        raise EmptyBody("the image is empty (0 bytes)")
    if len(data) > limits.max_image_bytes:
        raise ImageTooLarge(
            f"image is {len(data)} bytes; the limit is {limits.max_image_bytes} bytes",
            size=len(data),
            limit=limits.max_image_bytes,
        )
    if image_format(data) is None:
        raise UndecodableImage(
            f"the {len(data)}-byte upload is not a {', '.join(IMAGE_FORMATS)} image (it starts "
            f"{data[:8].hex()})"
        )
    size = image_size(data)
    if size is None:
        raise ImageTooLarge(
            "the image's header does not say its size, so it is refused before decoding",
            limit=limits.max_image_pixels,
        )
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


# Container -> magic-byte test. FFmpeg opens far more (playlists, image sequences, network
# protocols in HLS manifests, ...); an upload is one of the containers cameras and phones write.
VIDEO_CONTAINERS: dict[str, Callable[[bytes], bool]] = {
    "MP4/MOV": lambda b: b[4:8] == b"ftyp",
    "AVI": lambda b: b[:4] == b"RIFF" and b[8:12] == b"AVI ",
    "Matroska/WebM": lambda b: b.startswith(b"\x1a\x45\xdf\xa3"),
}


def video_container(data: bytes) -> str | None:
    """The accepted container ``data`` starts like, else None."""
    return next((name for name, test in VIDEO_CONTAINERS.items() if test(data)), None)


def decode_video(
    data: bytes, limits: LimitsSpec, clock: Callable[[], float] = time.monotonic
) -> Clip:
    """Bytes of a video file -> Clip (RGB frames + fps), refusing clips over the frame limit,
    containers outside :data:`VIDEO_CONTAINERS`, frames over the pixel limit, and decodes that
    take longer than ``limits.max_video_decode_s``."""
    if not data:
        raise EmptyBody("the video is empty (0 bytes)")
    if len(data) > limits.max_video_bytes:
        raise PayloadTooLarge(
            f"video is {len(data)} bytes; the limit is {limits.max_video_bytes} bytes"
        )
    if video_container(data) is None:
        raise UndecodableVideo(
            f"the {len(data)}-byte upload is not a {', '.join(VIDEO_CONTAINERS)} video (it "
            f"starts {data[:12].hex()})"
        )
    # OpenCV's demuxers read from a path, not from memory.
    fd, path = tempfile.mkstemp(suffix=".video")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        try:
            if not cap.isOpened():
                raise UndecodableVideo(f"could not open the {len(data)}-byte upload as a video")
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
            height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
            if width * height > limits.max_image_pixels:
                raise ImageTooLarge(
                    f"video frames have {width * height} pixels; the limit is "
                    f"{limits.max_image_pixels} pixels",
                    pixels=width * height,
                    limit=limits.max_image_pixels,
                )
            deadline = clock() + limits.max_video_decode_s
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
                if frame.shape[0] * frame.shape[1] > limits.max_image_pixels:
                    raise ImageTooLarge(
                        f"a video frame has {frame.shape[0] * frame.shape[1]} pixels; the "
                        f"limit is {limits.max_image_pixels} pixels",
                        limit=limits.max_image_pixels,
                    )
                if clock() > deadline:
                    raise PayloadTooLarge(
                        f"the video took more than {limits.max_video_decode_s:g} s to decode "
                        f"({len(frames)} frames)",
                        limit=limits.max_video_decode_s,
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
