"""Turn an HTTP request into a pipeline input (image or clip), whatever way it was sent.

Accepted: ``multipart/form-data`` (field ``image``/``file``, or ``video``, or repeated
``frames``), ``application/json`` (``image_base64``, or ``video_base64``, or ``frames_base64`` +
``fps``), or a raw ``image/*`` / ``video/*`` body. Anything else is a 415.

The body is read first, whole, by :meth:`RequestInput.receive`: capped while it streams in
(413 ``payload_too_large`` at the first byte past the route's cap, chunked or not) and under a
deadline (408 ``body_timeout``), before the request takes an admission slot. A multipart body's
file parts are counted while it is parsed (413 ``too_many_frames`` past ``max_frames``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

from starlette.datastructures import UploadFile
from starlette.requests import Request

from deployments.images import EncodedImage
from serving.config import LimitsSpec
from serving.errors import (
    BadRequest,
    BodyTimeout,
    CanaryError,
    EmptyBody,
    InvalidInput,
    PayloadTooLarge,
    TooManyFrames,
    UnsupportedMediaType,
)
from serving.http.media import decode_b64, decode_video, encoded_image, frames_clip
from serving.pipelines.ops import Clip

# OpenAPI request bodies of the inference routes (FastAPI cannot infer them: the routes read
# the body themselves, whichever of the accepted forms it comes in).
IMAGE_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {"image": {"type": "string", "format": "binary"}},
            }
        },
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["image_base64"],
                "properties": {"image_base64": {"type": "string", "format": "byte"}},
            }
        },
    },
}
ANY_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        **IMAGE_BODY["content"],
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "image": {"type": "string", "format": "binary"},
                    "video": {"type": "string", "format": "binary"},
                    "frames": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    "fps": {"type": "number"},
                },
            }
        },
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "image_base64": {"type": "string", "format": "byte"},
                    "video_base64": {"type": "string", "format": "byte"},
                    "frames_base64": {
                        "type": "array",
                        "items": {"type": "string", "format": "byte"},
                    },
                    "fps": {"type": "number"},
                },
            }
        },
    },
}

IMAGE_FIELDS = ("image", "file")
VIDEO_FIELDS = ("video", "file")
ADMIN_BODY_BYTES = 1024 * 1024  # a rollout spec, a key request: kilobytes
BODY_FRAMING = 64 * 1024  # multipart boundaries and part headers, JSON keys
IMAGE_FILE_PARTS = 2  # 'image' or 'file'; a few more are a client mistake, thousands an attack
Kind = Literal["image", "clip"]


def body_limit(limits: LimitsSpec, kind: Kind) -> int:
    """The most bytes a body of ``kind`` may have: its payload's limit in base64 (the largest
    accepted encoding) plus framing."""
    payload = limits.max_image_bytes if kind == "image" else limits.max_video_bytes
    return -(-payload * 4 // 3) + BODY_FRAMING


async def receive_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The whole body, refused at its first byte past ``limit`` (413) or when it has not
    arrived in ``timeout_s`` (408). Starlette's ``body()`` and ``form()`` then read it from the
    request (``_body``), never from the socket again."""
    cached: bytes | None = getattr(request, "_body", None)
    if cached is not None:
        return cached
    _check_length(request, limit)
    chunks: list[bytes] = []
    size = 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(
                    f"request body is over {limit} bytes, the limit of this route",
                    limit=limit,
                )
            chunks.append(chunk)

    try:
        async with asyncio.timeout(timeout_s):
            await read()
    except TimeoutError:
        raise BodyTimeout(
            f"the request body did not arrive within {timeout_s:g} s ({size} bytes came)"
        ) from None
    body = b"".join(chunks)
    request._body = body
    return body


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _check_length(request: Request, limit: int) -> None:
    raw = request.headers.get("content-length")
    if raw and raw.isdigit() and int(raw) > limit:
        raise PayloadTooLarge(f"request body is {raw} bytes; the limit is {limit} bytes")


async def _json(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body:
        raise EmptyBody("the request body is empty")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"the JSON body must be an object, got {type(data).__name__}")
    return data


async def _form(request: Request, max_files: int, too_many: CanaryError) -> Any:
    """The parsed multipart body; ``too_many`` is raised at its ``max_files + 1``-th file part
    (counted by the parser, before the parts after it are read)."""
    try:
        return await request.form(max_files=max_files, max_fields=100, max_part_size=64 * 1024)
    except Exception as e:  # multipart parse errors: the client's body is malformed
        if "Too many files" in str(e):
            raise too_many from None
        raise BadRequest(f"malformed multipart body: {type(e).__name__}") from None


async def _upload_bytes(value: Any, field: str) -> bytes:
    if isinstance(value, UploadFile):
        return await value.read()
    if isinstance(value, str):
        raise InvalidInput(f"multipart field {field!r} must be a file upload, not a text field")
    raise InvalidInput(f"multipart field {field!r} is missing")


async def read_image(request: Request, limits: LimitsSpec) -> tuple[EncodedImage, bytes]:
    """Returns the checked, still encoded image and the raw bytes it came from."""
    ctype = _content_type(request)
    await receive_body(request, body_limit(limits, "image"), limits.body_timeout_s)
    if ctype == "multipart/form-data":
        too_many = PayloadTooLarge(
            f"the multipart body has more than {IMAGE_FILE_PARTS} file parts; send one image "
            "in field 'image'",
            limit=IMAGE_FILE_PARTS,
        )
        form = await _form(request, IMAGE_FILE_PARTS, too_many)
        field = next((f for f in IMAGE_FIELDS if f in form), None)
        if field is None:
            if len(form) == 0:
                raise EmptyBody("the multipart body has no fields; send the image as 'image'")
            raise InvalidInput(f"send the image in field 'image'; got fields {sorted(form)}")
        data = await _upload_bytes(form[field], field)
    elif ctype == "application/json":
        body = await _json(request)
        if "image_base64" not in body:
            raise InvalidInput(f"JSON body needs 'image_base64'; got keys {sorted(body)[:10]}")
        data = decode_b64(body["image_base64"], "image_base64")
    elif ctype.startswith("image/") or ctype == "application/octet-stream":
        data = await request.body()
    elif not ctype:
        if not await request.body():
            raise EmptyBody("the request body is empty")
        raise UnsupportedMediaType(
            "missing Content-Type; send multipart/form-data, application/json or image/*"
        )
    else:
        raise UnsupportedMediaType(
            f"content type {ctype!r} is not accepted for an image; use multipart/form-data, "
            "application/json or image/*"
        )
    # Only the header is read here (microseconds): the pixels are decoded by the replicas that
    # use them, each at the size it needs (deployments.images).
    return encoded_image(data, limits), data


async def read_clip(request: Request, limits: LimitsSpec) -> tuple[Clip, bytes]:
    ctype = _content_type(request)
    await receive_body(request, body_limit(limits, "clip"), limits.body_timeout_s)
    if ctype == "multipart/form-data":
        too_many = TooManyFrames(
            f"clip has more than {limits.max_frames} frames (the limit)", limit=limits.max_frames
        )
        form = await _form(request, limits.max_frames, too_many)
        frames = form.getlist("frames")
        if frames:
            raw = [await _upload_bytes(f, "frames") for f in frames]
            fps = _fps(form.get("fps"))
            return await asyncio.to_thread(frames_clip, raw, fps, limits), b"".join(raw)
        field = next((f for f in VIDEO_FIELDS if f in form), None)
        if field is None:
            if len(form) == 0:
                raise EmptyBody("the multipart body has no fields; send the clip as 'video'")
            raise InvalidInput(f"send the clip in field 'video' or 'frames'; got {sorted(form)}")
        data = await _upload_bytes(form[field], field)
        return await asyncio.to_thread(decode_video, data, limits), data
    if ctype == "application/json":
        body = await _json(request)
        if "frames_base64" in body:
            items = body["frames_base64"]
            if not isinstance(items, list):
                raise InvalidInput("'frames_base64' must be a list of base64 strings")
            if len(items) > limits.max_frames:
                frames_clip([b""] * len(items), None, limits)  # raises TooManyFrames
            raw = [decode_b64(x, f"frames_base64[{i}]") for i, x in enumerate(items)]
            return (
                await asyncio.to_thread(frames_clip, raw, _fps(body.get("fps")), limits),
                b"".join(raw),
            )
        if "video_base64" in body:
            data = decode_b64(body["video_base64"], "video_base64")
            return await asyncio.to_thread(decode_video, data, limits), data
        raise InvalidInput(
            f"JSON body needs 'frames_base64' or 'video_base64'; got keys {sorted(body)[:10]}"
        )
    if ctype.startswith("video/") or ctype == "application/octet-stream":
        data = await request.body()
        return await asyncio.to_thread(decode_video, data, limits), data
    if not ctype and not await request.body():
        raise EmptyBody("the request body is empty")
    raise UnsupportedMediaType(
        f"content type {ctype or '(none)'!r} is not accepted for a clip; use multipart/form-data, "
        "application/json or video/*"
    )


def _fps(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        fps = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"'fps' must be a number, got {value!r}") from None
    if not 0 < fps <= 240:
        raise InvalidInput(f"'fps' must be in (0, 240], got {fps}")
    return fps


class RequestInput:
    """The request's body as the data plane's input source (read once, when asked)."""

    def __init__(self, request: Request, limits: LimitsSpec, kind: Kind = "image") -> None:
        self._request = request
        self._limits = limits
        self._kind = kind

    async def receive(self) -> CanaryError | None:
        """Read the whole body now, capped and under the deadline; the refusal, if any."""
        limits = self._limits
        try:
            await receive_body(self._request, body_limit(limits, self._kind), limits.body_timeout_s)
        except CanaryError as e:
            return e
        return None

    async def image(self) -> tuple[EncodedImage, bytes]:
        return await read_image(self._request, self._limits)

    async def clip(self) -> tuple[Clip, bytes]:
        return await read_clip(self._request, self._limits)


async def json_body(request: Request, what: str, timeout_s: float = 30.0) -> Any:
    """The JSON document of an admin request (``what`` names it in the 400), at most
    ``ADMIN_BODY_BYTES`` (413) and within ``timeout_s`` (408)."""
    body = await receive_body(request, ADMIN_BODY_BYTES, timeout_s)
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInput(f"{what} must be a JSON object") from None
