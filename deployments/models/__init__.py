"""The plain model code behind the deployments: load with ONNX Runtime, pre- and post-process.

detector_model    person detector: letterbox, optional tiles, one ORT call per batch, decode
blazepose         BlazePose post-processing: SSD anchors, decoding, weighted NMS
yolo_pose         decoding for user-supplied YOLO-pose ONNX exports
ocr_model         the OCR model (PP-OCR family) over ONNX Runtime
ocr_det           DB text detection pre- and post-processing
ocr_rec           text-line orientation and recognition with CTC decoding
action_model      action classifier over a track's feature sequence
action_features   per-track features (BlazePose's 4 keypoints), shared by training and serving
action_features_coco  the same from the 17 COCO keypoints (action v2)

Submodules are not imported here, so importing one model does not load the others.
"""

__all__ = [
    "action_features",
    "action_features_coco",
    "action_model",
    "blazepose",
    "detector_model",
    "ocr_det",
    "ocr_model",
    "ocr_rec",
    "yolo_pose",
]
