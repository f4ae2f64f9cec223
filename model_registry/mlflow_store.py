"""MLflow 3 adapter of :class:`ModelStore`; the only module that imports mlflow.

What goes where in MLflow (experiment, runs, version tags) is :mod:`model_registry.mlflow_layout`;
drift references are :mod:`model_registry.drift_reference`; verified local copies are
:mod:`model_registry.local_copy`. This module talks to MLflow and maps its errors to ours.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

from model_registry import settings
from model_registry.drift_reference import freeze_reference, load_reference
from model_registry.local_copy import ensure_local_copy
from model_registry.manifest import Manifest
from model_registry.mlflow_layout import (
    ARTIFACT_PATH,
    EXPERIMENT,
    TAG_MANAGED,
    TAG_REFERENCE,
    TAG_TASK,
    alias_map,
    default_artifact_location,
    mlflow_key,
    paged,
    redact,
    refuse_reserved_tag,
    registration_tags,
    run_params,
    version_info,
    wait_ready,
)
from model_registry.store import ModelRef, ModelStore, ModelVersionInfo, ResolvedModel
from serving.errors import (
    ArtifactIntegrityError,
    CanaryError,
    RegistryError,
    UnknownModel,
    UnknownModelVersion,
)

# Evaluation runs (models evaluate) live apart from the registration runs.
EVAL_EXPERIMENT = "evaluation"
# TAG_FILES and TAG_REFERENCE: callers that read a version's tags find the names here too.
log = logging.getLogger(__name__)

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
        self.artifact_location = artifact_location or default_artifact_location(self.tracking_uri)
        self._models_dir = Path(models_dir) if models_dir else None
        self._ready_timeout_s = ready_timeout_s
        self._experiment_id: str | None = None

    def __repr__(self) -> str:
        return f"MlflowModelStore({redact(self.tracking_uri)!r})"

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
        files, version_tags = registration_tags(model_dir, manifest, tags or {})
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
                    # MLflow's own wait logs at INFO on every call; wait_ready polls quietly.
                    await_creation_for=0,
                )
                mv = wait_ready(mv, self._client.get_model_version, self._ready_timeout_s)
            except BaseException:
                # The run stays as the record of a failed registration.
                with contextlib.suppress(Exception):
                    self._client.set_terminated(run_id, status="FAILED")
                raise
            self._client.set_terminated(run_id, status="FINISHED")
        info = version_info(mv)
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
        refuse_reserved_tag(key)
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
        meta: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Freeze ``frame`` (a pandas DataFrame of feature rows) as the drift reference of
        ``name`` v``version``; an existing one is only replaced on request."""
        info = self.get(ModelRef(name, version=version))
        record = freeze_reference(
            info,
            frame,
            source=source,
            features=features,
            replace=replace,
            upload=self._upload,
            meta=meta,
        )
        value = json.dumps(record)
        with self._translate():
            self._client.set_model_version_tag(name, str(version), TAG_REFERENCE, value)
        return record

    def log_evaluation(
        self,
        name: str,
        version: int,
        metrics: Mapping[str, float],
        *,
        params: Mapping[str, Any],
        details: Mapping[str, Any] | None = None,
    ) -> str:
        """A run in the ``evaluation`` experiment (params, metrics, ``evaluation.json``) and
        ``eval.*`` tags on the version, so the registry's version page shows the scores."""
        self.get(ModelRef(name, version=version))
        with self._translate():
            exp = self._client.get_experiment_by_name(EVAL_EXPERIMENT)
            exp_id = exp.experiment_id if exp else self._client.create_experiment(
                EVAL_EXPERIMENT, artifact_location=self.artifact_location
            )  # fmt: skip
            run = self._client.create_run(
                exp_id, run_name=f"evaluate-{name}-v{version}", tags={"canaryserve.model": name}
            )
            run_id = str(run.info.run_id)
            for key, value in {"model": name, "version": version, **params}.items():
                self._client.log_param(run_id, mlflow_key(key), str(value)[:500])
            for key, number in metrics.items():
                self._client.log_metric(run_id, mlflow_key(key), float(number))
            if details is not None:
                self._client.log_dict(run_id, dict(details), "evaluation.json")
            self._client.set_terminated(run_id, status="FINISHED")
            tags = {**metrics, **params, "run_id": run_id}
            for key, value in tags.items():
                self._client.set_model_version_tag(
                    name, str(version), f"eval.{mlflow_key(key)}", str(value)
                )
        return run_id

    def reference(self, name: str, version: int) -> tuple[dict[str, Any], Any] | None:
        """(record, DataFrame) of the frozen drift reference, verified; None if it has none."""
        info = self.get(ModelRef(name, version=version))
        with self._translate():
            return load_reference(info, self._local_dir(), self._download_file)

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
        return version_info(mv)

    def resolve(self, ref: ModelRef | str) -> ResolvedModel:
        ref = ModelRef.parse(ref)
        info = self.get(ref)
        copy = ensure_local_copy(
            self._local_dir() / info.name / str(info.version),
            info.files,
            what=str(info.ref),
            download=functools.partial(self._download, info),
        )
        return ResolvedModel(info, copy, Manifest.load(copy), ref)

    def list_models(self) -> dict[str, list[ModelVersionInfo]]:
        with self._translate():
            out: dict[str, list[ModelVersionInfo]] = {}
            for rm in paged(self._client.search_registered_models):
                if rm.tags.get(TAG_MANAGED) != "true":
                    continue
                aliases = alias_map(rm.aliases)
                versions = [
                    version_info(mv, aliases)
                    for mv in paged(
                        self._client.search_model_versions, filter_string=f"name='{rm.name}'"
                    )
                ]
                out[rm.name] = sorted(versions, key=lambda v: v.version)
        return dict(sorted(out.items()))

    def aliases(self, name: str) -> dict[str, int]:
        return alias_map(self._registered_model(name).aliases)

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
        params = [Param(k, v) for k, v in run_params(manifest)]
        metrics = [Metric(mlflow_key(k), float(v), now, 0) for k, v in manifest.metrics.items()]
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

    def _local_dir(self) -> Path:
        return self._models_dir or settings.local_models_dir()

    def _upload(self, run_id: str, path: Path, artifact_dir: str) -> None:
        with self._translate():
            self._client.log_artifact(run_id, str(path), artifact_dir)

    def _download_file(self, run_id: str, artifact: str, into: Path) -> Path:
        return Path(self._client.download_artifacts(run_id, artifact, str(into)))

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
                f"{info.ref}: source {redact(source)!r} is a single file, not a model directory"
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
            for mv in paged(self._client.search_model_versions, filter_string=f"name='{ref.name}'")
        )
        what = f"alias {ref.alias!r}" if ref.alias is not None else f"version {ref.version}"
        raise UnknownModelVersion(
            f"model {ref.name!r} has no {what} (ref {str(ref)!r}); "
            f"versions: {versions}, aliases: {alias_map(rm.aliases)}",
            model=ref.name,
            ref=str(ref),
        )

    def _model_names(self, limit: int = 20) -> list[str]:
        names = sorted(
            rm.name
            for rm in paged(self._client.search_registered_models)
            if rm.tags.get(TAG_MANAGED) == "true"
        )
        return names[:limit] + ([f"... {len(names) - limit} more"] if len(names) > limit else [])

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
                f"model registry at {redact(self.tracking_uri)} failed: {detail}"
            ) from e
