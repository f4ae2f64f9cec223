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
    PayloadTooLarge,
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


def _png_header(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG whose header says ``width`` x ``height`` (RGB, 8 bit); its pixel data is
    ``idat`` (a bomb is a few hundred KB of zlib that inflates to the header's size)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture
def no_decode(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fails the test if anything is decoded; returns the sizes that were attempted."""
    tried: list[int] = []

    def refuse(buf: np.ndarray, flags: int) -> None:
        tried.append(len(buf))
        raise AssertionError("decoded an image that should have been refused from its header")

    monkeypatch.setattr(cv2, "imdecode", refuse)
    return tried


@pytest.mark.parametrize("side", [20_000, 15_000])
def test_a_png_bomb_is_refused_from_its_header_before_any_decode(
    side: int, no_decode: list[int]
) -> None:
    import zlib

    # 20000x20000 is past Pillow's own bomb limit (it refuses to even open it), 15000x15000
    # only past ours: both are refused before a pixel is inflated.
    bomb = _png_header(side, side, zlib.compress(b"\0" * 4_000_000, 9))
    with pytest.raises(ImageTooLarge, match="pixels; the limit is 40000000"):
        decode_image(bomb, LIMITS)
    assert no_decode == []


@pytest.mark.parametrize(
    "data",
    [
        b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 20000 +X 20000\n" + b"\0" * 64,  # HDR
        b"PF\n20000 20000\n-1.0\n" + b"\0" * 64,  # PFM
        b"P6\n20000 20000\n255\n" + b"\0" * 64,  # PPM
        b"II*\x00" + b"\0" * 64,  # TIFF
        b"<svg xmlns='http://www.w3.org/2000/svg' width='20000' height='20000'/>",
    ],
    ids=["hdr", "pfm", "ppm", "tiff", "svg"],
)
def test_formats_outside_the_allow_list_are_refused_unread(
    data: bytes, no_decode: list[int]
) -> None:
    with pytest.raises(UndecodableImage, match="not a JPEG, PNG, WebP, BMP image"):
        decode_image(data, LIMITS)
    assert no_decode == []


def test_an_image_whose_header_gives_no_size_is_refused_not_decoded(no_decode: list[int]) -> None:
    with pytest.raises(ImageTooLarge, match="does not say its size"):
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\xff" * 40, LIMITS)
    assert no_decode == []


def test_decoder_env_caps_opencv_itself_in_a_fresh_process() -> None:
    """What each replica runs with: OpenCV refuses, at its own header read, an image past the
    limit that reached it by a path that skipped the ingress's checks."""
    import os
    import subprocess
    import sys

    from deployments.images import decoder_env

    script = (
        "import sys, numpy as np\n"
        "from deployments.images import EncodedImage\n"
        "from serving.errors import UndecodableImage\n"
        "data = sys.stdin.buffer.read()\n"
        "try:\n"
        "    print(EncodedImage(data, 64, 64).decode().shape)\n"
        "except UndecodableImage:\n"
        "    print('refused')\n"
    )
    png = _png(np.zeros((1000, 1200, 3), np.uint8))  # 1.2 MP
    for env, want in [({}, "(1000, 1200, 3)"), (decoder_env(1_000_000), "refused")]:
        out = subprocess.run(
            [sys.executable, "-c", script],
            input=png,
            capture_output=True,
            env={**os.environ, **env},
            timeout=60,
            check=True,
        )
        assert out.stdout.decode().strip() == want, out.stderr.decode()[-500:]


@pytest.fixture
def no_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    opened: list[str] = []
    monkeypatch.setattr(cv2, "VideoCapture", lambda *a: opened.append(str(a[0])))
    return opened


@pytest.mark.parametrize(
    "data",
    [
        b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://10.0.0.1/secret.ts\n",  # HLS
        b"ffconcat version 1.0\nfile '/etc/passwd'\n",  # FFmpeg's concat demuxer
        b"\x00\x00\x01\xba" + b"\0" * 64,  # MPEG-PS
        b"GIF89a" + b"\0" * 64,
    ],
    ids=["hls", "ffconcat", "mpeg-ps", "gif"],
)
def test_containers_outside_the_allow_list_never_reach_ffmpeg(
    data: bytes, no_ffmpeg: list[str]
) -> None:
    with pytest.raises(UndecodableVideo, match="not a MP4/MOV, AVI, Matroska/WebM video"):
        decode_video(data, LIMITS)
    assert no_ffmpeg == []


def test_video_frames_over_the_pixel_limit_are_refused_before_decoding(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = _video(tmp_path / "a.avi", 3, size=(64, 48))
    with pytest.raises(ImageTooLarge, match="3072 pixels; the limit is 3000"):
        decode_video(data, LimitsSpec(max_image_pixels=3000))


def test_a_video_that_takes_too_long_to_decode_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock = iter(range(0, 1000, 7))  # every frame "takes" 7 s
    data = _video(tmp_path / "a.avi", 20)
    with pytest.raises(PayloadTooLarge, match=r"more than 30 s to decode \(4 frames\)"):
        decode_video(data, LimitsSpec(max_video_decode_s=30), clock=lambda: float(next(clock)))
