"""Model deployments: one Ray Serve deployment per model kind, over plain (Ray-free) models.

base              what every deployment shares: resolve one registry version, batch off the loop
loader            loads any registered model directory into its plain model object
runtime           ONNX Runtime sessions with the execution provider the hardware really has
types             result types shared by models, deployments and pipelines
detection         the detection deployment (one detector version per replica set)
ocr               the OCR deployment (detection + direction classification + recognition)
action            the action-classification deployment (one label per tracked person)
models/           the plain model code each deployment runs (no Ray): detector, OCR, action

Submodules are not imported here: Ray, ONNX Runtime and OpenCV load only where they are used.
"""

__all__ = ["action", "base", "detection", "loader", "models", "ocr", "runtime", "types"]
