"""Verified local copies of model versions: ``<models_dir>/<name>/<version>/``.

A copy is used only while every file matches the sha256 recorded at registration; one that
does not is deleted and downloaded again. Downloads land in a temp dir next to the destination
and are renamed into place only once verified, so a reader never sees a half-verified copy, and
two processes that fetch the same version at once end with one good copy between them.

The registry adapter does the download (the ``download`` callable); this module imports no
registry backend.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from model_registry.store import verify_dir
from serving.errors import ArtifactIntegrityError, RegistryError

log = logging.getLogger(__name__)


def ensure_local_copy(
    dest: Path,
    files: Mapping[str, str],
    *,
    what: str,
    download: Callable[[Path], Path],
) -> Path:
    """``dest``, holding exactly ``files`` (relpath -> sha256); ``download(into)`` fetches the
    version under the empty dir ``into`` and returns the model directory it wrote there."""
    if dest.is_dir():
        try:
            verify_dir(dest, files, what=what)
            return dest
        except ArtifactIntegrityError as e:
            log.warning("local copy of %s does not verify (%s); downloading again", what, e)
            shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        local = download(tmp)
        verify_dir(local, files, what=what)
        try:
            local.rename(dest)
        except OSError as e:
            # Another process finished the same download first; use its copy if it verifies.
            if not dest.is_dir():
                raise RegistryError(f"cannot place {what} at {dest}: {e}") from e
            verify_dir(dest, files, what=what)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
