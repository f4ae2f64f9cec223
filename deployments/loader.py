"""Load any registered model directory into its plain (Ray-free) model object.

Every model kind implements the same small protocol so that the deployments, the
``models register`` checks and the benchmarks treat them alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from deployments.runtime import RuntimeInfo, RuntimeSpec
from model_registry.manifest import Manifest


class Model(Protocol):
    manifest: Manifest
    runtime: RuntimeInfo
    ort_calls: int  # incremented once per InferenceSession.run (batching is observable)

    def predict(self, inputs: list[Any]) -> list[Any]:
        """One output per input; a batch of N inputs runs as few ORT calls as possible."""
        ...

    def example_input(self) -> Any:
        """A synthetic input good enough for a smoke prediction (used before registering)."""
        ...

    def check_io(self) -> None:
        """Raise ModelValidationError if the ONNX inputs/outputs disagree with the manifest."""
        ...


def load_model(model_dir: Path, runtime: RuntimeSpec | None = None) -> Model:
    model_dir = Path(model_dir)
    manifest = Manifest.load(model_dir)
    spec = runtime or RuntimeSpec()
    if manifest.task == "detection":
        from deployments.models.detector_model import DetectorModel

        return DetectorModel(model_dir, manifest, spec)
    if manifest.task == "ocr":
        from deployments.models.ocr_model import OcrModel

        return OcrModel(model_dir, manifest, spec)
    from deployments.models.action_model import ActionModel

    return ActionModel(model_dir, manifest, spec)
