"""Request bodies: capped while they stream in, read under a deadline, counted part by part."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest
from starlette.requests import Request

from serving.config import LimitsSpec
from serving.errors import BodyTimeout, PayloadTooLarge, TooManyFrames
from serving.http import bodies
from serving.http.bodies import body_limit, receive_body


class Upload:
    """An ASGI ``receive`` that hands out ``chunks`` (``delay_s`` before each) and counts them."""

    def __init__(self, chunks: Iterable[bytes], delay_s: float = 0.0) -> None:
        self.chunks = list(chunks)
        self.delay_s = delay_s
        self.taken = 0

    async def __call__(self) -> dict[str, Any]:
        await asyncio.sleep(self.delay_s)
        if self.taken >= len(self.chunks):
            return {"type": "http.disconnect"}
        self.taken += 1
        more = self.taken < len(self.chunks)
        return {"type": "http.request", "body": self.chunks[self.taken - 1], "more_body": more}


def _request(upload: Upload, headers: dict[str, str] | None = None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": "POST", "path": "/", "headers": raw, "query_string": b""}
    return Request(scope, upload)


def test_a_chunked_body_is_refused_at_its_first_byte_past_the_cap_and_the_rest_is_never_read() -> (
    None
):
    upload = Upload([b"x" * 400] * 10)  # 4000 bytes, no Content-Length: chunked
    with pytest.raises(PayloadTooLarge, match="over 1000 bytes"):
        asyncio.run(receive_body(_request(upload), 1000, timeout_s=5))
    assert upload.taken == 3  # 400, 800, 1200: stopped there


def test_a_declared_length_past_the_cap_is_refused_before_any_byte_is_read() -> None:
    upload = Upload([b"x" * 10])
    with pytest.raises(PayloadTooLarge, match="5000 bytes"):
        asyncio.run(receive_body(_request(upload, {"Content-Length": "5000"}), 1000, 5))
    assert upload.taken == 0


def test_a_body_that_does_not_arrive_in_time_is_a_body_timeout() -> None:
    upload = Upload([b"x" * 10] * 100, delay_s=0.05)  # 5 s to arrive
    with pytest.raises(BodyTimeout, match=r"within 0\.2 s"):
        asyncio.run(receive_body(_request(upload), 10_000, timeout_s=0.2))
    assert upload.taken < 10


def test_a_body_under_the_cap_is_read_once_and_parsed_from_memory() -> None:
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + b"PIXELS"
        + f"\r\n--{boundary}--\r\n".encode()
    )
    upload = Upload([body[:20], body[20:]])
    request = _request(upload, {"Content-Type": f"multipart/form-data; boundary={boundary}"})

    async def read() -> bytes:
        assert await receive_body(request, 10_000, 5) == body
        form = await request.form()
        return await form["image"].read()  # type: ignore[union-attr]

    assert asyncio.run(read()) == b"PIXELS" and upload.taken == 2


def _multipart(n_files: int, boundary: str = "bnd") -> bytes:
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="frames"; filename="f.png"\r\n'
        "Content-Type: image/png\r\n\r\nXX\r\n"
    )
    return (part * n_files + f"--{boundary}--\r\n").encode()


def test_frames_are_counted_while_the_multipart_body_is_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[int] = []
    real = bodies.frames_clip

    def spy(raw: list[bytes], fps: float | None, limits: LimitsSpec) -> Any:
        parsed.append(len(raw))
        return real(raw, fps, limits)

    monkeypatch.setattr(bodies, "frames_clip", spy)
    limits = LimitsSpec(max_frames=3)
    request = _request(
        Upload([_multipart(5000)]), {"Content-Type": "multipart/form-data; boundary=bnd"}
    )
    with pytest.raises(TooManyFrames, match="more than 3 frames"):
        asyncio.run(bodies.read_clip(request, limits))
    assert parsed == []  # refused by the parser, not after collecting 5000 parts


def test_an_image_body_with_many_file_parts_is_413() -> None:
    request = _request(
        Upload([_multipart(50)]), {"Content-Type": "multipart/form-data; boundary=bnd"}
    )
    with pytest.raises(PayloadTooLarge, match="more than 2 file parts"):
        asyncio.run(bodies.read_image(request, LimitsSpec()))


def test_a_route_s_cap_is_its_payload_in_base64_plus_framing() -> None:
    limits = LimitsSpec(max_image_bytes=3000, max_video_bytes=30_000)
    assert body_limit(limits, "image") == 4000 + bodies.BODY_FRAMING
    assert body_limit(limits, "clip") == 40_000 + bodies.BODY_FRAMING


def test_an_admin_body_past_a_mebibyte_is_413() -> None:
    upload = Upload([b" " * 65536] * 20)
    with pytest.raises(PayloadTooLarge):
        asyncio.run(bodies.json_body(_request(upload), "the rollout spec"))
    assert upload.taken == 17
