"""How canaryserve lays its records out in MLflow, and how it reads them back.

One experiment ``canaryserve-models``; each registration is one run that logs the manifest's
numbers as params/metrics and the whole model directory as the run's ``model/`` artifact; the
registered model version points at that artifact. Integrity and lineage live in version tags:

- ``canaryserve.sha256``: JSON ``{relpath: sha256}`` of every file. One JSON tag rather than
  one tag per file because tag *keys* are limited to 250 chars of ``[/\\w.\\- :]`` (file names
  are not), while a registry tag *value* may hold 100,000 chars (~1,000 files).
- ``canaryserve.task``, ``canaryserve.keypoint_layout`` (see ``Manifest.keypoint_layout``),
  ``canaryserve.source.<k>`` (manifest.source), ``canaryserve.metric.<k>``.
- ``canaryserve.drift.reference``: the frozen drift reference (see ``drift_reference.py``).

Registered models created here carry the tag ``canaryserve.managed=true``; ``list_models`` shows
only those, so a shared MLflow server with other teams' models does not look non-empty.
Versions are addressed by aliases (``champion``/``challenger``); stages are not used.

Plain data in, plain data out: MLflow entities are read by attribute, and nothing here imports
mlflow (:mod:`model_registry.mlflow_store` is the adapter that does).
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_registry import settings
from model_registry.manifest import Manifest
from model_registry.store import ModelVersionInfo, hash_dir
from serving.errors import BadRequest, ManifestError, ModelValidationError, RegistryError

EXPERIMENT = "canaryserve-models"
ARTIFACT_PATH = "model"
TAG_MANAGED = "canaryserve.managed"
TAG_TASK = "canaryserve.task"
TAG_FILES = "canaryserve.sha256"
TAG_SOURCE = "canaryserve.source."
TAG_METRIC = "canaryserve.metric."
TAG_REFERENCE = "canaryserve.drift.reference"
TAG_LAYOUT = "canaryserve.keypoint_layout"
REFERENCE_DIR = "drift"
RESERVED_TAGS = (TAG_FILES, TAG_TASK, TAG_SOURCE, TAG_METRIC, TAG_REFERENCE, TAG_LAYOUT)
MAX_TAG_VALUE = 100_000  # mlflow.utils.validation.MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH
_MAX_PARAM_VALUE = 500  # MLflow allows 6000; params are for reading, not storage
_BAD_KEY_CHARS = re.compile(r"[^\w.\-]")


# --- writing --------------------------------------------------------------------------------


def refuse_reserved_tag(key: str) -> None:
    if key.startswith(RESERVED_TAGS):
        raise BadRequest(f"tag {key!r} is reserved for canaryserve's own records")


def registration_tags(
    model_dir: Path, manifest: Manifest, tags: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """(file hashes, version tags) for registering ``model_dir``; refuses a directory that
    lacks an artifact its manifest names, hashes too long for one tag, and reserved tags."""
    files = hash_dir(model_dir)
    for role, rel in manifest.artifacts.items():
        if Path(rel).as_posix() not in files:
            raise ManifestError(
                f"manifest of {manifest.name!r} names artifact {role!r} = {rel!r}, "
                f"but {model_dir.name!r} has no such file"
            )
    files_json = json.dumps(files, sort_keys=True, separators=(",", ":"))
    if len(files_json) > MAX_TAG_VALUE:
        raise ModelValidationError(
            f"{model_dir.name!r} has {len(files)} files; their hashes need "
            f"{len(files_json)} chars, over MLflow's tag limit of {MAX_TAG_VALUE}"
        )
    for key in tags:
        refuse_reserved_tag(key)
    version_tags = {
        **dict(tags),
        TAG_TASK: manifest.task,
        TAG_FILES: files_json,
        **({TAG_LAYOUT: manifest.keypoint_layout} if manifest.keypoint_layout else {}),
        **{TAG_SOURCE + mlflow_key(k): str(v) for k, v in manifest.source.items()},
        **{TAG_METRIC + mlflow_key(k): repr(float(v)) for k, v in manifest.metrics.items()},
    }
    return files, version_tags


def run_params(manifest: Manifest) -> list[tuple[str, str]]:
    """The manifest's numbers as run params: MLflow-safe keys, values cut to a readable size."""
    params: dict[str, Any] = {
        "name": manifest.name,
        "task": manifest.task,
        "input_width": manifest.input.width,
        "input_height": manifest.input.height,
        "input_channels": manifest.input.channels,
        "input_layout": manifest.input.layout,
        "num_labels": len(manifest.labels),
        "runtimes": ",".join(manifest.runtimes),
    }
    params.update({f"artifact.{k}": v for k, v in manifest.artifacts.items()})
    params.update({f"preprocess.{k}": v for k, v in manifest.preprocess.items()})
    params.update({f"postprocess.{k}": v for k, v in manifest.postprocess.items()})
    return [(mlflow_key(k), _param(v)) for k, v in params.items()]


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _MAX_PARAM_VALUE else text[: _MAX_PARAM_VALUE - 3] + "..."


def mlflow_key(key: str) -> str:
    """MLflow keys allow ``[\\w.\\- /:]``; we keep ``[\\w.-]`` and replace the rest with '_'."""
    return _BAD_KEY_CHARS.sub("_", str(key))[:200] or "_"


def default_artifact_location(tracking_uri: str) -> str | None:
    """Where the experiment keeps artifacts when we create it (None: the server decides)."""
    scheme = urllib.parse.urlparse(tracking_uri).scheme.lower()
    if scheme.startswith("sqlite"):
        db = tracking_uri.split(":///", 1)[-1] if ":///" in tracking_uri else ""
        if db and db != ":memory:":
            return settings.artifact_root(Path(db).resolve().parent).as_uri()
        return settings.artifact_root().as_uri()
    if scheme in ("postgresql", "mysql", "mssql") or "+" in scheme:
        return settings.artifact_root().as_uri()
    return None  # http(s) server: its default (proxied mlflow-artifacts:/); file store: its own


# --- reading --------------------------------------------------------------------------------


def alias_map(aliases: Any) -> dict[str, int]:
    # RegisteredModel.aliases is {alias: version-string}.
    return {str(a): int(v) for a, v in dict(aliases or {}).items()}


def paged(search: Any, **kw: Any) -> Iterator[Any]:
    """Every item of an MLflow ``search_*`` call, page after page."""
    token = None
    while True:
        page = search(page_token=token, **kw)
        yield from page
        token = page.token
        if not token:
            return


def version_info(mv: Any, aliases: Mapping[str, int] | None = None) -> ModelVersionInfo:
    """Our record of an MLflow ModelVersion; ``aliases`` (alias -> version) when known better
    than ``mv.aliases``, which search results may leave empty (MLflow docs)."""
    tags: dict[str, str] = dict(mv.tags or {})
    try:
        files = json.loads(tags.pop(TAG_FILES, "{}"))
    except ValueError:
        files = {}
    version = int(mv.version)
    if aliases is not None:
        names = tuple(sorted(a for a, v in aliases.items() if v == version))
    else:
        names = tuple(sorted(mv.aliases or ()))
    return ModelVersionInfo(
        name=mv.name,
        version=version,
        created_at=datetime.fromtimestamp((mv.creation_timestamp or 0) / 1000, tz=UTC),
        source_uri=mv.source or "",
        aliases=names,
        tags=tags,
        description=mv.description or "",
        run_id=mv.run_id or None,
        task=tags.get(TAG_TASK),
        status=str(mv.status),
        files=files if isinstance(files, dict) else {},
        lineage={k[len(TAG_SOURCE) :]: v for k, v in tags.items() if k.startswith(TAG_SOURCE)},
        metrics={
            k[len(TAG_METRIC) :]: float(v) for k, v in tags.items() if k.startswith(TAG_METRIC)
        },
    )


def wait_ready(mv: Any, get: Callable[[str, str], Any], timeout_s: float) -> Any:
    """Poll a new ModelVersion (``get(name, version)``) until MLflow says READY."""
    deadline = time.monotonic() + timeout_s
    while mv.status != "READY":
        if mv.status == "FAILED_REGISTRATION":
            raise RegistryError(f"{mv.name}/{mv.version} failed to register: {mv.status_message}")
        if time.monotonic() > deadline:
            raise RegistryError(f"{mv.name}/{mv.version} still {mv.status} after {timeout_s:.0f}s")
        time.sleep(0.5)
        mv = get(mv.name, mv.version)
    return mv


def redact(uri: str) -> str:
    """Drop user:password from a URI before it goes into a message or a log line."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return uri
