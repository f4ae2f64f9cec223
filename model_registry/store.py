"""The model registry's public surface: references, version records and the abstract store.

A model version is a directory (artifacts + ``manifest.yaml``) registered under the manifest's
name. Callers address versions with a :class:`ModelRef` (``detector@champion`` or
``detector/3``), read records with :meth:`ModelStore.get` and obtain a local, sha256-verified
copy with :meth:`ModelStore.resolve`. The only adapter today is
``model_registry.mlflow_store.MlflowModelStore``; nothing here imports MLflow.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from model_registry.manifest import Manifest
from model_registry.wheels import sha256_file
from serving.errors import ArtifactIntegrityError, BadRequest

CHAMPION = "champion"
CHALLENGER = "challenger"

# Same rule as Manifest.name, so every registered name is also a valid manifest name.
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
# MLflow accepts [\w-]; we stay lower-case and refuse the names MLflow reserves
# ('latest' and 'v<digits>', which mean versions in models:/ URIs).
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_RESERVED_ALIAS = re.compile(r"^(latest|v\d+)$")


class InvalidModelRef(BadRequest, ValueError):
    """A model reference string that is neither ``name@alias`` nor ``name/version``.

    Also a ValueError so that pydantic turns it into a ValidationError inside configs.
    """

    code = "invalid_model_ref"


@dataclass(frozen=True)
class ModelRef:
    """``name@alias`` (moves when the alias moves) or ``name/version`` (pinned)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __post_init__(self) -> None:
        shown = f"name={self.name!r}, version={self.version!r}, alias={self.alias!r}"
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise InvalidModelRef(f"model name {self.name!r} must match {_NAME.pattern} ({shown})")
        if (self.version is None) == (self.alias is None):
            raise InvalidModelRef(f"a model ref needs exactly one of version or alias ({shown})")
        if self.version is not None and (
            isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1
        ):
            raise InvalidModelRef(f"model version must be an integer >= 1 ({shown})")
        if self.alias is not None:
            if not isinstance(self.alias, str) or not _ALIAS.match(self.alias):
                raise InvalidModelRef(f"alias {self.alias!r} must match {_ALIAS.pattern}")
            if _RESERVED_ALIAS.match(self.alias):
                raise InvalidModelRef(
                    f"alias {self.alias!r} is reserved by MLflow ('latest' and 'v<N>')"
                )

    @classmethod
    def parse(cls, text: ModelRef | str) -> ModelRef:
        """Parse ``'detector@champion'`` or ``'detector/3'``; ``str(ref)`` gives it back."""
        if isinstance(text, ModelRef):
            return text
        if not isinstance(text, str):
            raise InvalidModelRef(f"a model ref must be a string, got {text!r}")
        value = text.strip()
        if "@" in value and "/" not in value:
            name, _, alias = value.partition("@")
            if "@" in alias:
                raise InvalidModelRef(f"model ref {text!r} has more than one '@'")
            return cls._build(text, name, alias=alias)
        if "/" in value and "@" not in value:
            name, _, version = value.partition("/")
            if not version.isdigit() or version.startswith("0"):
                raise InvalidModelRef(
                    f"model ref {text!r}: version {version!r} is not a positive integer"
                )
            return cls._build(text, name, version=int(version))
        raise InvalidModelRef(
            f"model ref {text!r} must be 'name@alias' (e.g. 'detector@champion') "
            "or 'name/version' (e.g. 'detector/3')"
        )

    @classmethod
    def _build(cls, text: str, name: str, **kw: Any) -> ModelRef:
        try:
            return cls(name, **kw)
        except InvalidModelRef as e:
            raise InvalidModelRef(f"model ref {text!r}: {e.message}") from None

    @classmethod
    def pinned(cls, name: str, version: int) -> ModelRef:
        return cls(name, version=version)

    @classmethod
    def by_alias(cls, name: str, alias: str) -> ModelRef:
        return cls(name, alias=alias)

    @property
    def is_alias(self) -> bool:
        return self.alias is not None

    def __str__(self) -> str:
        return (
            f"{self.name}@{self.alias}" if self.alias is not None else f"{self.name}/{self.version}"
        )

    # Lets pydantic configs declare ``model: ModelRef`` and accept "detector@champion".
    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            cls.parse,
            json_schema_input_schema=core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )


@dataclass(frozen=True)
class ModelVersionInfo:
    """What the registry knows about one version (no files)."""

    name: str
    version: int
    created_at: datetime
    source_uri: str
    aliases: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    run_id: str | None = None
    task: str | None = None
    status: str = "READY"
    # relpath -> sha256 of every file of the version's directory, recorded at registration.
    files: Mapping[str, str] = field(default_factory=dict)
    # Lineage (manifest.source) and metrics (manifest.metrics) as recorded at registration.
    lineage: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.name, version=self.version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "ref": str(self.ref),
            "aliases": list(self.aliases),
            "task": self.task,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "description": self.description,
            "run_id": self.run_id,
            "source_uri": self.source_uri,
            "lineage": dict(self.lineage),
            "metrics": dict(self.metrics),
            "tags": dict(self.tags),
        }


@dataclass(frozen=True)
class ResolvedModel:
    """A version whose files are on local disk and match the hashes recorded at registration."""

    info: ModelVersionInfo
    path: Path
    manifest: Manifest
    requested: ModelRef  # what the caller asked for (an alias resolves to info.version)

    @property
    def ref(self) -> ModelRef:
        return self.info.ref


# --- file hashes (shared by every adapter) --------------------------------------------------


def hash_dir(model_dir: Path) -> dict[str, str]:
    """sha256 of every file under ``model_dir``, keyed by POSIX path relative to it."""
    root = Path(model_dir)
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def verify_dir(model_dir: Path, expected: Mapping[str, str], *, what: str) -> None:
    """Raise ArtifactIntegrityError unless ``model_dir`` holds exactly ``expected``'s files.

    ``what`` names the version in the message (e.g. ``'detector/3'``).
    """
    if not expected:
        raise ArtifactIntegrityError(
            f"{what} has no recorded file hashes; it was not registered by canaryserve",
            model=what,
        )
    actual = hash_dir(model_dir)
    for rel, sha in sorted(expected.items()):
        got = actual.get(rel)
        if got is None:
            raise ArtifactIntegrityError(
                f"{what}: file {rel!r} is missing (expected sha256 {sha})",
                model=what,
                file=rel,
                expected=sha,
                actual=None,
            )
        if got != sha:
            raise ArtifactIntegrityError(
                f"{what}: file {rel!r} has sha256 {got}, expected {sha}",
                model=what,
                file=rel,
                expected=sha,
                actual=got,
            )
    extra = sorted(set(actual) - set(expected))
    if extra:
        raise ArtifactIntegrityError(
            f"{what}: unexpected file {extra[0]!r} (sha256 {actual[extra[0]]}) not recorded at "
            f"registration" + (f"; {len(extra) - 1} more" if len(extra) > 1 else ""),
            model=what,
            file=extra[0],
            expected=None,
            actual=actual[extra[0]],
        )


# --- the store -----------------------------------------------------------------------------


class ModelStore(ABC):
    """One registry of versioned model directories. Adapters map their errors to ours:

    unknown name -> UnknownModel, unknown version/alias -> UnknownModelVersion, files that do not
    match their recorded hashes -> ArtifactIntegrityError, backend down -> RegistryError.
    """

    @abstractmethod
    def register(
        self,
        model_dir: Path,
        *,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersionInfo:
        """Store ``model_dir`` as the next version of the model its manifest names."""

    @abstractmethod
    def get(self, ref: ModelRef | str) -> ModelVersionInfo: ...

    @abstractmethod
    def resolve(self, ref: ModelRef | str) -> ResolvedModel:
        """A verified local copy of the version ``ref`` points at (downloaded if needed)."""

    @abstractmethod
    def list_models(self) -> dict[str, list[ModelVersionInfo]]:
        """Every model name -> its versions, oldest first."""

    @abstractmethod
    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version`` (moving it if it pointed elsewhere)."""

    @abstractmethod
    def delete_alias(self, name: str, alias: str) -> None: ...

    @abstractmethod
    def aliases(self, name: str) -> dict[str, int]: ...

    @abstractmethod
    def set_tag(self, name: str, version: int, key: str, value: str) -> None: ...

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
        """Freeze a drift reference (DataFrame of feature rows) with ``name`` v``version``;
        ``features`` is the version of the feature definitions that computed it."""
        raise NotImplementedError(f"{type(self).__name__} keeps no drift references")

    def log_evaluation(
        self,
        name: str,
        version: int,
        metrics: Mapping[str, float],
        *,
        params: Mapping[str, Any],
        details: Mapping[str, Any] | None = None,
    ) -> str:
        """Record an evaluation of ``name`` v``version`` (metrics such as recall, the ``params``
        that say which set, per-image ``details``) so the registry shows it; the record's id."""
        raise NotImplementedError(f"{type(self).__name__} keeps no evaluations")

    def reference(self, name: str, version: int) -> tuple[dict[str, Any], Any] | None:
        """(record, DataFrame) of the version's frozen drift reference, or None."""
        return None

    def is_empty(self) -> bool:
        return not any(self.list_models().values())
