"""Frozen drift references: what a model version's feature rows looked like when it was frozen.

A reference is a Parquet artifact of the version's run, found through the version tag
``canaryserve.drift.reference``, whose JSON record holds the artifact path and its sha256.
Freezing again writes ``drift/reference-<n+1>/`` and moves the tag; earlier artifacts stay in
the run as history. Readers get a copy in the local models dir that matches the recorded sha256.

The registry adapter moves the bytes (the ``upload``/``download`` callables) and writes the
tag; this module owns the record and the integrity check, so it imports no MLflow.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_registry.mlflow_layout import REFERENCE_DIR, TAG_REFERENCE
from model_registry.store import ModelVersionInfo
from model_registry.wheels import sha256_file
from serving.errors import ArtifactIntegrityError, BadRequest, RegistryError

# (run_id, local file, artifact dir in the run)
Upload = Callable[[str, Path, str], None]
# (run_id, artifact path in the run, local dir) -> the downloaded file
Download = Callable[[str, str, Path], Path]


def freeze_reference(
    info: ModelVersionInfo,
    frame: Any,
    *,
    source: str,
    features: int,
    replace: bool,
    upload: Upload,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Upload ``frame`` (a pandas DataFrame of feature rows) as the next reference artifact of
    ``info``'s run; returns the record the caller stores as the version's reference tag, with
    ``meta`` (how the rows were chosen, when the next window starts) merged in."""
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
        upload(info.run_id, path, artifact)
    return {
        "n": n,
        "artifact": f"{artifact}/reference.parquet",
        "sha256": digest,
        "rows": len(frame),
        "columns": [str(c) for c in frame.columns],
        "source": source,
        "features": int(features),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(meta or {}),
    }


def load_reference(
    info: ModelVersionInfo, models_dir: Path, download: Download
) -> tuple[dict[str, Any], Any] | None:
    """(record, DataFrame) of ``info``'s frozen reference, or None if it has none.

    The file is cached as ``<models_dir>/<name>/<version>-reference-<sha>.parquet`` and
    downloaded again whenever the cached bytes do not match the record.
    """
    import pandas as pd

    raw = info.tags.get(TAG_REFERENCE)
    if not raw or info.run_id is None:
        return None
    record = json.loads(raw)
    base = models_dir / info.name
    cached = base / f"{info.version}-reference-{record['sha256'][:16]}.parquet"
    if not cached.is_file() or sha256_file(cached) != record["sha256"]:
        base.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=base) as tmp:
            got = download(info.run_id, record["artifact"], Path(tmp))
            if sha256_file(got) != record["sha256"]:
                raise ArtifactIntegrityError(
                    f"{info.ref}: drift reference does not match its recorded sha256"
                )
            got.replace(cached)
    return record, pd.read_parquet(cached)
