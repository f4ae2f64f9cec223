"""Requests a web page could forge: the Host they were sent to, and how state changes are sent.

With auth off, a loopback caller is an admin, and a web page open in the operator's browser
calls from loopback too. Two checks, before routing and authentication, close that door:

* **Host.** With DNS rebinding, the page's own name resolves to 127.0.0.1, so the browser lets
  it read the answers (a key just made by ``POST /v1/keys``). Its requests still carry its own
  name in ``Host``: only requests whose Host is one of ``ingress.allowed_hosts`` are served
  (400 ``invalid_host``). ``"*"`` turns the check off, for a cluster behind its own ingress.
* **Content-Type.** A page may send a cross-site POST with a ``text/plain`` or form body (no
  CORS preflight), never one declared ``application/json``. So every state-changing request
  (POST, PUT, PATCH, DELETE) to the operator and admin routes must declare
  ``application/json``, body or not (415 ``unsupported_media_type``). The inference routes take
  uploads in any form they accept; they change no state.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.errors import CanaryError, InvalidHost, UnsupportedMediaType
from serving.http.errors import error_response, request_id_of

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# POST routes that run models on uploads: no state changes, any accepted body type.
INFERENCE_PATH = re.compile(r"^/v1/(pipelines/[^/]+|models/[^/]+:predict)$")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def host_name(value: str) -> str:
    """The name part of a ``Host`` header: no port, no IPv6 brackets, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def refusal(
    method: str, path: str, headers: Headers, allowed_hosts: Sequence[str]
) -> CanaryError | None:
    """Why the request must not be served, or None."""
    if "*" not in allowed_hosts:
        host = host_name(headers.get("host", ""))
        if host not in allowed_hosts:
            return InvalidHost(
                f"Host {headers.get('host', '')!r} is not one this server answers to "
                f"(ingress.allowed_hosts: {list(allowed_hosts)})"
            )
    if method in STATE_CHANGING and path.startswith("/v1/") and not INFERENCE_PATH.match(path):
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return UnsupportedMediaType(
                f"{method} {path} must be sent as application/json, got "
                f"{ctype or '(no Content-Type)'!r}"
            )
    return None


class RequestGuard:
    """ASGI middleware refusing what :func:`refusal` refuses, with the platform's error body."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.allowed_hosts = tuple(host_name(h) if h != "*" else h for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            error = refusal(scope["method"], scope["path"], headers, self.allowed_hosts)
            if error is not None:
                response = error_response(error, request_id_of(Request(scope)), id_header=False)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
