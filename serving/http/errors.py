"""Exceptions to HTTP answers: one table, looked up along the exception's MRO, installed once.

The lookup walks ``type(exc).__mro__`` the way Starlette finds an exception handler, so the
most specific entry wins (a ``RequestTimeout`` is a ``CanaryError``, an ``asyncio`` timeout is a
``TimeoutError``, anything else an ``Exception``). Every answer is
``{"error": {"code", "message"}, "request_id"}``; a 5xx body never echoes exception text (it
is logged with the request id instead).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.errors import CanaryError, RequestTimeout

log = logging.getLogger("canaryserve.http")

# status, code, message (for a status < 500; 5xx messages are generic)
Described = tuple[int, str, str]

_GENERIC = {
    502: "a model failed to answer; the request id identifies it in the logs",
    503: "the service is unavailable; retry later",
    504: "the request took longer than its timeout",
}


def _canary(exc: Any) -> Described:
    return exc.status_code, exc.code, exc.message


def _validation(exc: Any) -> Described:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}")
    return 422, "invalid_request", "; ".join(parts) or "invalid request"


def _http(exc: Any) -> Described:
    status = exc.status_code
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    return status, code, str(exc.detail)


TABLE: dict[type[BaseException], Callable[[Any], Described]] = {
    CanaryError: _canary,
    RequestValidationError: _validation,
    StarletteHTTPException: _http,
    TimeoutError: lambda _e: (504, RequestTimeout.code, ""),
    Exception: lambda _e: (500, "internal_error", ""),
}


def describe(exc: BaseException) -> Described:
    """(status, code, client-safe message) of ``exc``, from its most specific table entry."""
    for cls in type(exc).__mro__:
        entry = TABLE.get(cls)
        if entry is not None:
            status, code, message = entry(exc)
            if status >= 500:
                message = _GENERIC.get(
                    status, "internal error; the request id identifies it in the logs"
                )
            return status, code, message
    raise TypeError(f"not an exception: {exc!r}")  # pragma: no cover - Exception is in TABLE


class ErrorResponse(JSONResponse):
    """A JSON error answer that knows its stable error code (for metrics and audit)."""

    def __init__(
        self, status: int, code: str, message: str, request_id: str, headers: dict[str, str]
    ):
        body = {"error": {"code": code, "message": message}, "request_id": request_id}
        super().__init__(body, status_code=status, headers=headers)
        self.code = code


def error_response(exc: BaseException, request_id: str, *, id_header: bool = True) -> ErrorResponse:
    """The answer to ``exc``. Behind Ray Serve the proxy already answers with ``X-Request-ID``
    (the same id the ingress read from the request), so ``id_header=False`` there avoids a
    duplicated header."""
    status, code, message = describe(exc)
    if status >= 500:
        log.error("request %s failed with %s: %r", request_id, code, exc)
    headers = {"X-Request-Id": request_id} if id_header else {}
    if status in (503, 429):
        retry = getattr(exc, "retry_after_s", 1.0)
        headers["Retry-After"] = str(max(1, math.ceil(retry)))  # never too early
    return ErrorResponse(status, code, message, request_id, headers)


def request_id_of(request: Request) -> str:
    # Ray's proxy puts the caller's X-Request-ID, or one it generated, on every request and
    # echoes it in the response; using the same id keeps our records and Ray's logs joinable.
    given = request.headers.get("x-request-id", "")
    return given[:128] if given else uuid.uuid4().hex


async def _answer(request: Request, exc: Exception) -> JSONResponse:
    return error_response(exc, request_id_of(request), id_header=False)


def install_error_handlers(app: FastAPI) -> None:
    """Register the one handler for every table entry (Starlette then finds it by MRO too;
    ``CanaryError`` needs its own entry, or Starlette re-raises it as a server error)."""
    for cls in TABLE:
        app.add_exception_handler(cls, _answer)  # type: ignore[arg-type]
