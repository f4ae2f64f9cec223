"""MLflow 3 adapter of :class:`ModelStore`; the only module that imports mlflow.

Layout in MLflow: one experiment ``canaryserve-models``; each registration is one run that
logs the manifest's numbers as params/metrics and the whole model directory as the run's
``model/`` artifact; the registered model version points at that artifact. Integrity and
lineage live in version tags:

- ``canaryserve.sha256``: JSON ``{relpath: sha256}`` of every file. One JSON tag rather than
  one tag per file because tag *keys* are limited to 250 chars of ``[/\\w.\\- :]`` (file names
  are not), while a registry tag *value* may hold 100,000 chars (~1,000 files).
- ``canaryserve.task``, ``canaryserve.source.<k>`` (manifest.source), ``canaryserve.metric.<k>``.

Registered models created here carry the tag ``canaryserve.managed=true``; ``list_models`` shows
only those, so a shared MLflow server with other teams' models does not look non-empty.
Versions are addressed by aliases (``champion``/``challenger``); stages are not used.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import shutil
import tempfile
import time
import urllib.parse
import warnings
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from model_registry import settings
from model_registry.manifest import Manifest
from model_registry.store import (
    ModelRef,
    ModelStore,
    ModelVersionInfo,
    ResolvedModel,
    hash_dir,
    verify_dir,
)
from model_registry.wheels import sha256_file
from serving.errors import (
    ArtifactIntegrityError,
    BadRequest,
    CanaryError,
    ManifestError,
    ModelValidationError,
    RegistryError,
    UnknownModel,
    UnknownModelVersion,
)

log = logging.getLogger(__name__)

EXPERIMENT = "canaryserve-models"
ARTIFACT_PATH = "model"
TAG_MANAGED = "canaryserve.managed"
TAG_TASK = "canaryserve.task"
TAG_FILES = "canaryserve.sha256"
TAG_SOURCE = "canaryserve.source."
TAG_METRIC = "canaryserve.metric."
TAG_REFERENCE = "canaryserve.drift.reference"
REFERENCE_DIR = "drift"
_RESERVED_TAGS = (TAG_FILES, TAG_TASK, TAG_SOURCE, TAG_METRIC, TAG_REFERENCE)
_MAX_TAG_VALUE = 100_000  # mlflow.utils.validation.MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH
_MAX_PARAM_VALUE = 500  # MLflow allows 6000; params are for reading, not storage
_BAD_KEY_CHARS = re.compile(r"[^\w.\-]")

# MLflow's defaults suit a notebook: progress bars on stderr, and 7 HTTP retries with
# exponential backoff (~4 minutes before a dead server is reported). A serving platform wants
# quiet logs and an answer within a minute. Only defaults: explicit env settings win.
_ENV_DEFAULTS = {
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    # set_terminated() prints "View run ... at: http://..." on stdout for HTTP tracking URIs.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
# "Creating initial MLflow database tables..." and alembic's migration chatter on first use.
_NOISY_LOGGERS = ("mlflow.store.db.utils", "alembic", "alembic.runtime.migration")


class MlflowModelStore(ModelStore):
    """Model registry on MLflow (embedded SQLite by default, or a ``mlflow server`` URI).

    ``artifact_location`` is where the ``canaryserve-models`` experiment keeps artifacts when
    this store creates it. Default: for a SQLite tracking store, ``mlartifacts/`` next to the
    database (the data dir for the embedded store); for other database URIs the data dir's
    ``mlartifacts/``; for an HTTP server, the server's own default (proxied artifacts).
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        registry_uri: str | None = None,
        artifact_location: str | None = None,
        *,
        models_dir: Path | None = None,
        ready_timeout_s: float = 60.0,
    ) -> None:
        for key, value in _ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        self.tracking_uri = tracking_uri or settings.tracking_uri()
        self.registry_uri = registry_uri or self.tracking_uri
        self.artifact_location = artifact_location or _default_artifact_location(self.tracking_uri)
        self._models_dir = Path(models_dir) if models_dir else None
        self._ready_timeout_s = ready_timeout_s
        self._experiment_id: str | None = None

    def __repr__(self) -> str:
        return f"MlflowModelStore({_redact(self.tracking_uri)!r})"

    @functools.cached_property
    def _client(self) -> Any:
        # Lazy: MlflowClient opens (and for a new SQLite file, migrates) the database on
        # construction, and a broken database should surface as RegistryError on first use.
        from mlflow import MlflowClient

        with self._translate(), warnings.catch_warnings():
            # SQLAlchemy 2 deprecation warnings from MLflow's own ORM mappings.
            warnings.simplefilter("ignore", DeprecationWarning)
            return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    # --- writes ---------------------------------------------------------------------------

    def register(
        self,
        model_dir: Path,
        *,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersionInfo:
        model_dir = Path(model_dir)
        manifest = Manifest.load(model_dir)
        files = hash_dir(model_dir)
        for role, rel in manifest.artifacts.items():
            if Path(rel).as_posix() not in files:
                raise ManifestError(
                    f"manifest of {manifest.name!r} names artifact {role!r} = {rel!r}, "
                    f"but {model_dir.name!r} has no such file"
                )
        files_json = json.dumps(files, sort_keys=True, separators=(",", ":"))
        if len(files_json) > _MAX_TAG_VALUE:
            raise ModelValidationError(
                f"{model_dir.name!r} has {len(files)} files; their hashes need "
                f"{len(files_json)} chars, over MLflow's tag limit of {_MAX_TAG_VALUE}"
            )
        for key in tags or {}:
            if key.startswith(_RESERVED_TAGS):
                raise BadRequest(f"tag {key!r} is reserved for canaryserve's own records")
        version_tags = {
            **dict(tags or {}),
            TAG_TASK: manifest.task,
            TAG_FILES: files_json,
            **{TAG_SOURCE + _key(k): str(v) for k, v in manifest.source.items()},
            **{TAG_METRIC + _key(k): repr(float(v)) for k, v in manifest.metrics.items()},
        }
        with self._translate():
            run = self._start_run(manifest)
            run_id = run.info.run_id
            try:
                self._log_run(run_id, model_dir, manifest)
                self._ensure_registered_model(manifest)
                mv = self._client.create_model_version(
                    manifest.name,
                    source=f"{run.info.artifact_uri.rstrip('/')}/{ARTIFACT_PATH}",
                    run_id=run_id,
                    tags=version_tags,
                    description=description if description is not None else manifest.description,
                    # MLflow's own wait logs at INFO on every call; _wait_ready polls quietly.
                    await_creation_for=0,
                )
                mv = self._wait_ready(mv)
            except BaseException:
                # The run stays as the record of a failed registration.
                with contextlib.suppress(Exception):
                    self._client.set_terminated(run_id, status="FAILED")
                raise
            self._client.set_terminated(run_id, status="FINISHED")
        info = self._info(mv)
        log.info("registered %s (%d files) from %s", info.ref, len(files), model_dir)
        return info

    def set_alias(self, name: str, alias: str, version: int) -> None:
        ModelRef(name, alias=alias)  # validates the alias before MLflow sees it
        self.get(ModelRef(name, version=version))  # UnknownModel / UnknownModelVersion
        with self._translate():
            self._client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        """Idempotent: deleting an alias that is not set is not an error (rollbacks retry)."""
        if alias not in self.aliases(name):
            return
        with self._translate():
            self._client.delete_registered_model_alias(name, alias)

    def set_tag(self, name: str, version: int, key: str, value: str) -> None:
        if key.startswith(_RESERVED_TAGS):
            raise BadRequest(f"tag {key!r} is reserved for canaryserve's own records")
        self.get(ModelRef(name, version=version))
        with self._translate():
            self._client.set_model_version_tag(name, str(version), key, str(value))

    def log_reference(
        self,
        name: str,
        version: int,
        frame: Any,
        *,
        source: str,
        features: int = 1,
        replace: bool = False,
    ) -> dict[str, Any]:
        """Freeze ``frame`` (a pandas DataFrame of feature rows) as the drift reference of
        ``name`` v``version``: a Parquet artifact of the version's run, found through a version
        tag that records its sha256. An existing reference is only replaced on request (the
        earlier artifact stays in the run as history)."""
        info = self.get(ModelRef(name, version=version))
        current = info.tags.get(TAG_REFERENCE)
        if current and not replace:
            raise BadRequest(f"{info.ref} already has a frozen drift reference; replace=True")
        if info.run_id is None:
            raise RegistryError(f"{info.ref} has no run to attach a drift reference to")
        n = json.loads(current).get("n", 0) + 1 if current else 1
        artifact = f"{REFERENCE_DIR}/reference-{n}"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "reference.parquet"
            frame.to_parquet(path, index=False)
            digest = sha256_file(path)
            with self._translate():
                self._client.log_artifact(info.run_id, str(path), artifact)
        record = {
            "n": n,
            "artifact": f"{artifact}/reference.parquet",
            "sha256": digest,
            "rows": len(frame),
            "columns": [str(c) for c in frame.columns],
            "source": source,
            "features": int(features),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        with self._translate():
            self._client.set_model_version_tag(
                name, str(version), TAG_REFERENCE, json.dumps(record)
            )
        return record

    def reference(self, name: str, version: int) -> tuple[dict[str, Any], Any] | None:
        """(record, DataFrame) of the frozen drift reference, verified; None if it has none."""
        import pandas as pd

        info = self.get(ModelRef(name, version=version))
        raw = info.tags.get(TAG_REFERENCE)
        if not raw or info.run_id is None:
            return None
        record = json.loads(raw)
        base = (self._models_dir or settings.local_models_dir()) / info.name
        cached = base / f"{info.version}-reference-{record['sha256'][:16]}.parquet"
        if not cached.is_file() or sha256_file(cached) != record["sha256"]:
            base.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=base) as tmp, self._translate():
                got = Path(self._client.download_artifacts(info.run_id, record["artifact"], tmp))
                if sha256_file(got) != record["sha256"]:
                    raise ArtifactIntegrityError(
                        f"{info.ref}: drift reference does not match its recorded sha256"
                    )
                got.replace(cached)
        return record, pd.read_parquet(cached)

    # --- reads ----------------------------------------------------------------------------

    def get(self, ref: ModelRef | str) -> ModelVersionInfo:
        ref = ModelRef.parse(ref)
        from mlflow.exceptions import MlflowException

        with self._translate():
            try:
                if ref.alias is not None:
                    mv = self._client.get_model_version_by_alias(ref.name, ref.alias)
                else:
                    mv = self._client.get_model_version(ref.name, str(ref.version))
            except MlflowException as e:
                # A missing alias is INVALID_PARAMETER_VALUE in MLflow 3, a missing version is
                # RESOURCE_DOES_NOT_EXIST; either way say what exists instead.
                if e.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise
                self._raise_not_found(ref)
        return self._info(mv)

    def resolve(self, ref: ModelRef | str) -> ResolvedModel:
        ref = ModelRef.parse(ref)
        info = self.get(ref)
        dest = (self._models_dir or settings.local_models_dir()) / info.name / str(info.version)
        what = str(info.ref)
        if dest.is_dir():
            try:
                verify_dir(dest, info.files, what=what)
                return ResolvedModel(info, dest, Manifest.load(dest), ref)
            except ArtifactIntegrityError as e:
                log.warning("local copy of %s does not verify (%s); downloading again", what, e)
                shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{info.version}-", dir=dest.parent))
        try:
            local = self._download(info, tmp)
            verify_dir(local, info.files, what=what)
            try:
                local.rename(dest)
            except OSError as e:
                # Another process finished the same download first; use its copy if it verifies.
                if not dest.is_dir():
                    raise RegistryError(f"cannot place {what} at {dest}: {e}") from e
                verify_dir(dest, info.files, what=what)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return ResolvedModel(info, dest, Manifest.load(dest), ref)

    def list_models(self) -> dict[str, list[ModelVersionInfo]]:
        with self._translate():
            out: dict[str, list[ModelVersionInfo]] = {}
            for rm in self._paged(self._client.search_registered_models):
                if rm.tags.get(TAG_MANAGED) != "true":
                    continue
                aliases = _alias_map(rm.aliases)
                versions = [
                    self._info(mv, aliases)
                    for mv in self._paged(
                        self._client.search_model_versions, filter_string=f"name='{rm.name}'"
                    )
                ]
                out[rm.name] = sorted(versions, key=lambda v: v.version)
        return dict(sorted(out.items()))

    def aliases(self, name: str) -> dict[str, int]:
        return _alias_map(self._registered_model(name).aliases)

    # --- MLflow plumbing ------------------------------------------------------------------

    def _experiment(self) -> str:
        if self._experiment_id is not None:
            return self._experiment_id
        from mlflow.exceptions import MlflowException

        exp = self._client.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            try:
                exp_id = self._client.create_experiment(
                    EXPERIMENT, artifact_location=self.artifact_location
                )
            except MlflowException as e:  # created concurrently by another process
                if e.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                exp = self._client.get_experiment_by_name(EXPERIMENT)
                exp_id = exp.experiment_id
        else:
            exp_id = exp.experiment_id
            if exp.lifecycle_stage == "deleted":
                self._client.restore_experiment(exp_id)
        self._experiment_id = exp_id
        return exp_id

    def _start_run(self, manifest: Manifest) -> Any:
        return self._client.create_run(
            self._experiment(),
            run_name=f"register-{manifest.name}",
            tags={"canaryserve.model": manifest.name, TAG_TASK: manifest.task},
        )

    def _log_run(self, run_id: str, model_dir: Path, manifest: Manifest) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        params = [Param(_key(k), _param(v)) for k, v in _params(manifest).items()]
        metrics = [Metric(_key(k), float(v), now, 0) for k, v in manifest.metrics.items()]
        for i in range(0, max(len(params), 1), 100):  # MLflow: <= 100 params per batch
            self._client.log_batch(
                run_id, metrics=metrics if i == 0 else [], params=params[i : i + 100]
            )
        if manifest.description:
            self._client.log_batch(
                run_id, tags=[RunTag("mlflow.note.content", manifest.description)]
            )
        self._client.log_artifacts(run_id, str(model_dir), ARTIFACT_PATH)

    def _ensure_registered_model(self, manifest: Manifest) -> None:
        from mlflow.exceptions import MlflowException

        try:
            rm = self._client.get_registered_model(manifest.name)
        except MlflowException as e:
            if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            try:
                self._client.create_registered_model(
                    manifest.name, tags={TAG_MANAGED: "true"}, description=manifest.description
                )
            except MlflowException as e2:  # created concurrently
                if e2.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                self._client.set_registered_model_tag(manifest.name, TAG_MANAGED, "true")
            return
        if rm.tags.get(TAG_MANAGED) != "true":
            self._client.set_registered_model_tag(manifest.name, TAG_MANAGED, "true")

    def _wait_ready(self, mv: Any) -> Any:
        deadline = time.monotonic() + self._ready_timeout_s
        while mv.status != "READY":
            if mv.status == "FAILED_REGISTRATION":
                raise RegistryError(
                    f"{mv.name}/{mv.version} failed to register: {mv.status_message}"
                )
            if time.monotonic() > deadline:
                raise RegistryError(
                    f"{mv.name}/{mv.version} still {mv.status} after {self._ready_timeout_s:.0f}s"
                )
            time.sleep(0.5)
            mv = self._client.get_model_version(mv.name, mv.version)
        return mv

    def _download(self, info: ModelVersionInfo, into: Path) -> Path:
        import mlflow.artifacts

        with self._translate():
            source = info.source_uri
            if source.startswith("models:/"):
                source = self._client.get_model_version_download_uri(info.name, str(info.version))
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=source,
                dst_path=str(into),
                tracking_uri=self.tracking_uri,
                registry_uri=self.registry_uri,
            )
        local = Path(path)
        if not local.is_dir():
            raise ArtifactIntegrityError(
                f"{info.ref}: source {_redact(source)!r} is a single file, not a model directory"
            )
        return local

    def _registered_model(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        with self._translate():
            try:
                return self._client.get_registered_model(name)
            except MlflowException as e:
                if e.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise
                raise UnknownModel(
                    f"no model {name!r} in the registry; models: {self._model_names()}",
                    model=name,
                ) from None

    def _raise_not_found(self, ref: ModelRef) -> NoReturn:
        rm = self._registered_model(ref.name)  # raises UnknownModel
        versions = sorted(
            int(mv.version)
            for mv in self._paged(
                self._client.search_model_versions, filter_string=f"name='{ref.name}'"
            )
        )
        what = f"alias {ref.alias!r}" if ref.alias is not None else f"version {ref.version}"
        raise UnknownModelVersion(
            f"model {ref.name!r} has no {what} (ref {str(ref)!r}); "
            f"versions: {versions}, aliases: {_alias_map(rm.aliases)}",
            model=ref.name,
            ref=str(ref),
        )

    def _model_names(self, limit: int = 20) -> list[str]:
        names = sorted(
            rm.name
            for rm in self._paged(self._client.search_registered_models)
            if rm.tags.get(TAG_MANAGED) == "true"
        )
        return names[:limit] + ([f"... {len(names) - limit} more"] if len(names) > limit else [])

    @staticmethod
    def _paged(search: Any, **kw: Any) -> Iterator[Any]:
        token = None
        while True:
            page = search(page_token=token, **kw)
            yield from page
            token = page.token
            if not token:
                return

    def _info(self, mv: Any, aliases: Mapping[str, int] | None = None) -> ModelVersionInfo:
        tags: dict[str, str] = dict(mv.tags or {})
        try:
            files = json.loads(tags.pop(TAG_FILES, "{}"))
        except ValueError:
            files = {}
        version = int(mv.version)
        if aliases is not None:  # search results may leave aliases empty (MLflow docs)
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

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        """Our errors pass through; anything MLflow/network/disk raises becomes RegistryError."""
        try:
            yield
        except CanaryError:
            raise
        except Exception as e:
            from mlflow.exceptions import MlflowException

            detail = e.message if isinstance(e, MlflowException) else f"{type(e).__name__}: {e}"
            raise RegistryError(
                f"model registry at {_redact(self.tracking_uri)} failed: {detail}"
            ) from e


# --- helpers --------------------------------------------------------------------------------


def _default_artifact_location(tracking_uri: str) -> str | None:
    scheme = urllib.parse.urlparse(tracking_uri).scheme.lower()
    if scheme.startswith("sqlite"):
        db = tracking_uri.split(":///", 1)[-1] if ":///" in tracking_uri else ""
        if db and db != ":memory:":
            return settings.artifact_root(Path(db).resolve().parent).as_uri()
        return settings.artifact_root().as_uri()
    if scheme in ("postgresql", "mysql", "mssql") or "+" in scheme:
        return settings.artifact_root().as_uri()
    return None  # http(s) server: its default (proxied mlflow-artifacts:/); file store: its own


def _alias_map(aliases: Any) -> dict[str, int]:
    # RegisteredModel.aliases is {alias: version-string}.
    return {str(a): int(v) for a, v in dict(aliases or {}).items()}


def _params(manifest: Manifest) -> dict[str, Any]:
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
    return params


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _MAX_PARAM_VALUE else text[: _MAX_PARAM_VALUE - 3] + "..."


def _key(key: str) -> str:
    """MLflow keys allow ``[\\w.\\- /:]``; we keep ``[\\w.-]`` and replace the rest with '_'."""
    return _BAD_KEY_CHARS.sub("_", str(key))[:200] or "_"


def _redact(uri: str) -> str:
    """Drop user:password from a URI before it goes into a message or a log line."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return uri
