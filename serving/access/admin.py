"""Admin actions behind the ``admin`` role: API keys and model registration over HTTP.

Plain functions (the ingress routes call them in a thread and audit the outcome); every bad
request is a :class:`~serving.errors.InvalidInput` with the offending value quoted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serving.access.keys import ROLES, add_key, list_keys, revoke_key
from serving.errors import InvalidInput, NotFound


class UnknownApiKey(NotFound):
    code = "unknown_api_key"


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput(f"the {what} must be a JSON object, got {type(body).__name__}")
    return body


def create_key(path: Path, body: Any) -> dict[str, Any]:
    """``{"name": ..., "role": ...}`` -> the new key (shown once) and its listing entry."""
    body = _object(body, "key request")
    name, role = body.get("name"), body.get("role")
    if not isinstance(name, str) or not isinstance(role, str):
        raise InvalidInput(
            f"expected string 'name' and 'role' (one of {list(ROLES)}), got {body!r}"
        )
    try:
        key = add_key(path, name, role)
    except ValueError as e:
        raise InvalidInput(str(e)) from None
    entry = next(k for k in list_keys(path) if k["name"] == name)
    return {**entry, "key": key}


def delete_key(path: Path, name_or_id: str) -> None:
    if not revoke_key(path, name_or_id):
        raise UnknownApiKey(f"no API key named or with id {name_or_id!r}")


def register(store: Any, name: str, body: Any) -> dict[str, Any]:
    """Check and register the model directory ``body["source"]`` (a path the platform can
    read, e.g. a mounted volume) as a new version of ``name``; ``alias`` optionally points an
    alias at it. The manifest must name the same model as the URL."""
    from model_registry.manifest import Manifest
    from model_registry.validate import register_checked

    body = _object(body, "registration")
    source, alias = body.get("source"), body.get("alias")
    description = body.get("description") or ""
    if not isinstance(source, str) or not source:
        raise InvalidInput(f"'source' must be the path of a model directory, got {source!r}")
    model_dir = Path(source)
    if not model_dir.is_dir():
        raise InvalidInput(f"source {source!r} is not a directory the platform can read")
    if alias is not None and (not isinstance(alias, str) or alias == "champion"):
        raise InvalidInput(f"alias {alias!r}: use a rollout to make a version champion")
    manifest = Manifest.load(model_dir)
    if manifest.name != name:
        raise InvalidInput(f"source {source!r} holds model {manifest.name!r}, not {name!r}")
    info = register_checked(store, model_dir, description=str(description))
    if alias:
        store.set_alias(info.name, alias, info.version)
    return {"name": info.name, "version": info.version, "alias": alias, "task": info.task}
