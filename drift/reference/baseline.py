"""Baselines: freeze a new drift reference for a version from what it sees in use.

A version's first reference is its evaluation set, frozen at registration. Once the version
serves real traffic, an ML engineer can freeze what it actually sees as the reference
(``canaryserve drift baseline``, ``POST /v1/drift/baselines``):

- ``traffic``: the version's own newest live rows (``rows``) or those of the last
  ``window_s`` seconds, exactly as capture wrote them;
- ``dir``: a folder of images on the platform's machine, run through that version (the rows
  registration would have computed had those photos been its evaluation set).

Freezing starts a fresh current window: the record carries ``current_since``, and reports
judge only rows captured after it (the rows before were judged against the old reference and
would mix two comparisons). The baseline is the next ``reference-<n>`` artifact of the
version's run; earlier ones stay as history.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from drift.windows import META_KEYS, TS_COLUMN, WindowStore
from serving.errors import InvalidBaseline, NotEnoughBaselineRows
from serving.schema import Strict

DEFAULT_TRAFFIC_ROWS = 500
MAX_ROWS = 20_000
MAX_DIR_IMAGES = 2_000
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
# A photo larger than this (pixels) is refused, as the ingress refuses one (decompression bombs).
MAX_PIXELS = 40_000_000
IMAGE_TASKS = ("detection", "ocr")


class BaselineRequest(Strict):
    """What to freeze: whose rows (model, version; the route fills in the champion) and where
    they come from."""

    model: str = Field(min_length=1, max_length=200)
    version: int = Field(ge=1)
    source: Literal["traffic", "dir"] = "traffic"
    rows: int | None = Field(
        default=None, ge=1, le=MAX_ROWS, description="traffic: newest rows; dir: most images."
    )
    window_s: float | None = Field(
        default=None, gt=0, le=90 * 86400, description="traffic: rows of the last seconds."
    )
    dir: str | None = Field(default=None, min_length=1, max_length=4096)

    @model_validator(mode="after")
    def _one_source(self) -> BaselineRequest:
        if self.source == "traffic":
            if self.dir is not None:
                raise ValueError(f"dir has value {self.dir!r}, but source is 'traffic'")
            if self.rows is not None and self.window_s is not None:
                raise ValueError(
                    f"rows ({self.rows}) and window_s ({self.window_s}) both given; "
                    "a traffic baseline takes the newest rows or a time window, not both"
                )
        else:
            if self.dir is None:
                raise ValueError("source is 'dir' but no dir was given")
            if self.window_s is not None:
                raise ValueError(f"window_s has value {self.window_s!r}; it is for traffic")
        return self

    @property
    def described(self) -> str:
        """How the rows were chosen, for the reference record and the audit trail."""
        if self.source == "dir":
            return f"images in {self.dir}"
        if self.window_s is not None:
            return f"live rows of the last {self.window_s:g} s"
        return f"newest {self.rows or DEFAULT_TRAFFIC_ROWS} live rows"


def window_start(record: dict[str, Any], since: float | None) -> float | None:
    """Where a report's current window starts for a reference ``record``: the later of
    ``since`` and just after the reference was frozen as a baseline (a row stamped at that
    instant was there to be frozen)."""
    frozen = record.get("current_since")
    if frozen is None:
        return since
    start = float(frozen) + 1e-6
    return start if since is None else max(start, since)


def traffic_frame(
    windows: WindowStore, request: BaselineRequest, *, now: float, min_rows: int
) -> pd.DataFrame:
    """The rows a traffic baseline freezes, from the monitor's ``windows``: the version's
    newest live rows, or those of the last ``window_s`` seconds (at most ``MAX_ROWS``)."""
    if request.window_s is not None:
        live = windows.frame(request.model, request.version, since=now - request.window_s)
        live = live.tail(MAX_ROWS)
    else:
        last = request.rows or DEFAULT_TRAFFIC_ROWS
        live = windows.frame(request.model, request.version, last=last)
    return traffic_rows(live, skip=(*META_KEYS, TS_COLUMN), min_rows=min_rows)


def traffic_rows(live: pd.DataFrame, *, skip: tuple[str, ...], min_rows: int) -> pd.DataFrame:
    """The feature columns of captured ``live`` rows (meta columns in ``skip`` dropped)."""
    if len(live) < min_rows:
        raise NotEnoughBaselineRows(
            f"{len(live)} live rows match; a baseline needs at least {min_rows} "
            "(as many as a drift report). Send traffic first, or widen --rows / --window."
        )
    return live.drop(columns=[c for c in skip if c in live.columns]).reset_index(drop=True)


def image_files(directory: str, limit: int | None) -> list[Path]:
    """The image files of ``directory`` (not recursive), sorted by name, at most ``limit``."""
    root = Path(directory).expanduser()
    if not root.is_absolute():
        raise InvalidBaseline(f"dir has value {directory!r}; give an absolute path")
    if not root.is_dir():
        raise InvalidBaseline(f"dir {directory!r} is not a folder the platform can read")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InvalidBaseline(
            f"no images in {directory!r}; expected files ending in {sorted(IMAGE_SUFFIXES)}"
        )
    return files[: min(limit or MAX_DIR_IMAGES, MAX_DIR_IMAGES)]


def read_images(files: list[Path]) -> tuple[list[np.ndarray], list[str]]:
    """RGB arrays of the readable ``files``, and the names of those that were skipped."""
    import cv2
    from PIL import Image

    images, skipped = [], []
    for path in files:
        # The header's size first: never decode a bomb to find out it is one.
        try:
            with Image.open(path) as header:
                width, height = header.size
        except Exception:
            width = height = 0
        if width * height > MAX_PIXELS or min(width, height) < 8:
            skipped.append(path.name)
            continue
        image = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            skipped.append(path.name)
            continue
        images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return images, skipped


def dir_rows(
    request: BaselineRequest, task: str | None, predict: Any, *, min_rows: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Rows of the folder's images run through ``predict`` (the version's ``Model.predict``),
    and what was read (images used, files skipped)."""
    from drift.reference import reference_rows

    if task not in IMAGE_TASKS:
        raise InvalidBaseline(
            f"{request.model} is a {task!r} model; a folder baseline is for image models "
            f"{list(IMAGE_TASKS)}. Freeze its baseline from traffic instead."
        )
    images, skipped = read_images(image_files(str(request.dir), request.rows))
    if len(images) < min_rows:
        raise NotEnoughBaselineRows(
            f"{len(images)} readable images in {request.dir!r} ({len(skipped)} skipped); "
            f"a baseline needs at least {min_rows}"
        )
    frame = reference_rows(predict, task, [(img, img) for img in images])
    return frame, {"images": len(images), "skipped": skipped[:20], "skipped_count": len(skipped)}
