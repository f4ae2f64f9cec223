"""What the commands share: the ``--url`` option, one HTTP call, and how an error ends a command.

Both kinds of failure, an error answer from the server and a ``CanaryError`` raised here, end
the same way: one red ``error [code]: message`` line on stderr and exit code 2.
"""

from __future__ import annotations

from typing import Any, NoReturn

import typer

from serving.errors import CanaryError

# With auth on, every command sends ``CANARYSERVE_API_KEY`` (an operator or admin key).
URL_OPTION = typer.Option(
    "http://127.0.0.1:8000", "--url", envvar="CANARYSERVE_URL", help="canaryserve base URL."
)


def fail(e: CanaryError) -> NoReturn:
    """End the command on a ``CanaryError``."""
    _exit_with(e.code, e.message)


def api(method: str, url: str, path: str, **kw: Any) -> Any:
    """One request to a running canaryserve; its JSON body, or the command ends (exit 2)."""
    import os

    import httpx

    key = os.environ.get("CANARYSERVE_API_KEY")
    if key:  # a platform with auth on: the caller's key, as any client would send it
        kw["headers"] = {"Authorization": f"Bearer {key}", **kw.get("headers", {})}
    if method.upper() in {"POST", "PUT", "PATCH", "DELETE"} and not kw.keys() & {"json", "files"}:
        # State changes go as JSON even without a body (serving.http.guard: a web page cannot
        # forge that cross-site).
        kw["headers"] = {"Content-Type": "application/json", **kw.get("headers", {})}
    kw.setdefault("timeout", 60)
    try:
        r = httpx.request(method, f"{url}{path}", **kw)
    except httpx.HTTPError as e:
        typer.secho(f"error: could not reach {url}: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    if r.status_code >= 400:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        _exit_with(err.get("code", r.status_code), err.get("message", r.text))
    return body


def _exit_with(code: object, message: object) -> NoReturn:
    typer.secho(f"error [{code}]: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)
