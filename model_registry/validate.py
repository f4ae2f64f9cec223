"""Checks a model directory must pass before it is registered.

Registering is the point of no return for a bad model: once a version exists, an alias can be
moved onto it. So ``register_checked`` loads the model the way a replica would, checks its
ONNX inputs/outputs against the manifest and runs one prediction; any failure raises
ModelValidationError naming the check, and nothing is registered.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployments.loader import load_model
from deployments.runtime import RuntimeSpec
from drift.features import FEATURES_VERSION
from model_registry.manifest import Manifest
from model_registry.store import ModelStore, ModelVersionInfo
from serving.errors import CanaryError, ModelValidationError

CHECKS = ("manifest", "artifacts", "load", "io", "predict")


@dataclass(frozen=True)
class ValidationReport:
    model_dir: Path
    manifest: Manifest
    checks: tuple[str, ...]  # the checks that passed, in order
    runtime: Mapping[str, Any] = field(default_factory=dict)  # RuntimeInfo.to_dict()
    load_s: float = 0.0
    predict_s: float = 0.0
    output_type: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.manifest.name,
            "task": self.manifest.task,
            "checks": list(self.checks),
            "runtime": dict(self.runtime),
            "load_s": round(self.load_s, 4),
            "predict_s": round(self.predict_s, 4),
            "output_type": self.output_type,
        }


def _fail(model_dir: Path, check: str, reason: str) -> ModelValidationError:
    # Only the directory's name: the message may reach an API client (422).
    return ModelValidationError(
        f"model dir {model_dir.name!r} failed check {check!r}: {reason}",
        check=check,
        model_dir=model_dir.name,
    )


def _reason(e: BaseException) -> str:
    if isinstance(e, CanaryError):  # already says what is wrong in our words
        return e.message
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def validate_model_dir(
    model_dir: Path, runtime_spec: RuntimeSpec | None = None
) -> ValidationReport:
    """Run every check in :data:`CHECKS` order; raise ModelValidationError at the first failure."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise _fail(model_dir, "manifest", "not a directory")
    try:
        manifest = Manifest.load(model_dir)
    except CanaryError as e:
        raise _fail(model_dir, "manifest", e.message) from e

    for role, rel in manifest.artifacts.items():
        if not (model_dir / rel).is_file():
            raise _fail(model_dir, "artifacts", f"artifact {role!r} file {rel!r} does not exist")

    start = time.perf_counter()
    try:
        model = load_model(model_dir, runtime_spec)
    except Exception as e:
        raise _fail(model_dir, "load", _reason(e)) from e
    load_s = time.perf_counter() - start

    try:
        model.check_io()
    except Exception as e:
        raise _fail(model_dir, "io", _reason(e)) from e

    start = time.perf_counter()
    try:
        outputs = model.predict([model.example_input()])
    except Exception as e:
        raise _fail(model_dir, "predict", _reason(e)) from e
    predict_s = time.perf_counter() - start
    if not isinstance(outputs, list) or len(outputs) != 1:
        got = f"{len(outputs)} outputs" if isinstance(outputs, list) else type(outputs).__name__
        raise _fail(model_dir, "predict", f"one input gave {got}, expected a list of 1")

    runtime: Any = getattr(model, "runtime", None)
    return ValidationReport(
        model_dir=model_dir,
        manifest=manifest,
        checks=CHECKS,
        runtime=runtime.to_dict() if hasattr(runtime, "to_dict") else {},
        load_s=load_s,
        predict_s=predict_s,
        output_type=type(outputs[0]).__name__,
    )


def register_checked(
    store: ModelStore,
    model_dir: Path,
    *,
    runtime_spec: RuntimeSpec | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> ModelVersionInfo:
    """Validate ``model_dir``, register it, and freeze its drift reference (its features on
    the evaluation set, see ``drift.reference``). On any failed check nothing is registered."""
    report = validate_model_dir(model_dir, runtime_spec)
    reference = evaluation_reference(Path(model_dir), report.manifest.task, runtime_spec)
    info = store.register(Path(model_dir), description=description, tags=tags)
    store.log_reference(
        info.name, info.version, reference, source="evaluation", features=FEATURES_VERSION
    )
    return info


def evaluation_reference(
    model_dir: Path, task: str, runtime_spec: RuntimeSpec | None = None
) -> Any:
    """The model's rows on the evaluation set, cached by the hash of its files (a reference
    model is registered again in every fresh data dir; its reference is the same every time)."""
    import hashlib
    import json

    import pandas as pd

    from drift.embeddings import default_embedder
    from drift.reference import build_reference
    from model_registry.settings import cache_dir
    from model_registry.store import hash_dir

    key = hashlib.sha256(json.dumps(hash_dir(model_dir), sort_keys=True).encode()).hexdigest()
    # A reference built while the cache had no embedder lacks its emb_ columns: a separate
    # entry, so it is not reused once the embedder exists.
    embedded = "-emb" if default_embedder().available else ""
    cached = cache_dir() / "references" / f"{task}-v{FEATURES_VERSION}{embedded}-{key[:24]}.parquet"
    if cached.is_file():
        return pd.read_parquet(cached)
    frame = build_reference(load_model(model_dir, runtime_spec).predict, task)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(cached)
    return frame
