"""What every CLI command that talks to a running canaryserve shares: the URL and one call."""

from __future__ import annotations

from typing import Any

import typer

URL_OPTION = typer.Option(
    "http://127.0.0.1:8000", "--url", envvar="CANARYSERVE_URL", help="canaryserve base URL."
)


def api(method: str, url: str, path: str, **kw: Any) -> Any:
    import httpx

    try:
        r = httpx.request(method, f"{url}{path}", timeout=60, **kw)
    except httpx.HTTPError as e:
        typer.secho(f"error: could not reach {url}: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    if r.status_code >= 400:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        typer.secho(
            f"error [{err.get('code', r.status_code)}]: {err.get('message', r.text)}",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(code=2)
    return body
