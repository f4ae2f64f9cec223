"""The manifest that travels with every model version (``manifest.yaml`` in its directory).

A model version is a directory of artifacts (ONNX files, label/dict files) plus this manifest.
It says what the model does (task), how to feed it (input), how to read its output
(pre/post-processing parameters) and which runtimes it prefers, so the serving side needs no
per-version code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from serving.errors import ManifestError, validation_lines

MANIFEST_FILE = "manifest.yaml"
Task = Literal["detection", "action", "ocr"]
# Preference order; the runtime picks the first one the hardware has (see deployments/runtime.py).
Runtime = Literal["tensorrt", "cuda", "cpu"]
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class InputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(gt=0, description="Model input width in pixels (or sequence length).")
    height: int = Field(gt=0, description="Model input height in pixels (or feature count).")
    channels: int = Field(default=3, ge=1)
    layout: Literal["NHWC", "NCHW", "NTF"] = Field(
        default="NHWC", description="NTF = batch, time, features (sequence models)."
    )


class Manifest(BaseModel):
    """Typed manifest. Unknown keys are refused so a typo cannot silently change behaviour."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Registered model name, e.g. 'detector'.")
    task: Task
    artifacts: dict[str, str] = Field(
        description="Role -> file path relative to the model directory, e.g. {'model': 'x.onnx'}."
    )
    input: InputSpec
    labels: list[str] = Field(default_factory=list)
    preprocess: dict[str, Any] = Field(default_factory=dict)
    postprocess: dict[str, Any] = Field(default_factory=dict)
    runtimes: list[Runtime] = Field(default=["cpu"])  # pydantic copies mutable defaults
    description: str = ""
    # Lineage: package name+version, or training script + git commit.
    source: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"model name {v!r} must match {_NAME.pattern}")
        return v

    @field_validator("artifacts")
    @classmethod
    def _artifacts(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("artifacts must name at least one file")
        for role, rel in v.items():
            p = Path(rel)
            if p.is_absolute() or ".." in p.parts:
                raise ValueError(f"artifact {role!r} path {rel!r} must be relative, inside the dir")
        return v

    @property
    def keypoint_layout(self) -> str | None:
        """The keypoint layout this version reports (detection) or consumes (action).

        A detector's follows from its decoder; an action version declares it in
        ``preprocess.keypoint_layout`` (versions from before layouts existed consume BlazePose's
        four points). OCR has none.
        """
        from deployments.models.keypoints import DECODER_LAYOUT

        if self.task == "detection":
            return DECODER_LAYOUT.get(str(self.postprocess.get("decoder", "blazepose")))
        if self.task == "action":
            return str(self.preprocess.get("keypoint_layout", "blazepose4"))
        return None

    @property
    def license(self) -> str | None:
        """The weights' licence as the lineage records it (``source.license``)."""
        return self.source.get("license")

    def artifact_path(self, model_dir: Path, role: str) -> Path:
        if role not in self.artifacts:
            raise ManifestError(
                f"manifest of {self.name!r} has no artifact {role!r}; has {sorted(self.artifacts)}"
            )
        return model_dir / self.artifacts[role]

    # --- files -----------------------------------------------------------------------------

    @classmethod
    def load(cls, model_dir: Path) -> Manifest:
        path = Path(model_dir) / MANIFEST_FILE
        if not path.is_file():
            raise ManifestError(f"no {MANIFEST_FILE} in {str(model_dir)!r}")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ManifestError(f"{MANIFEST_FILE} is not valid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise ManifestError(f"{MANIFEST_FILE} must be a mapping, got {type(raw).__name__}")
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            detail = "; ".join(line.strip() for line in validation_lines(e))
            raise ManifestError(f"invalid {MANIFEST_FILE}: {detail}") from None

    def dump(self, model_dir: Path) -> Path:
        path = Path(model_dir) / MANIFEST_FILE
        path.write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))
        return path
