"""The peer: the plain server a user would write instead of canaryserve, on the same ONNX file.

FastAPI + uvicorn + ONNX Runtime in one process: a sync route (FastAPI runs it in its thread
pool), one worker, default ``InferenceSession`` options, full-size ``cv2.imdecode``, letterbox,
one ``session.run`` per request, then the YOLO-pose decode with OpenCV's NMS. No routing,
audit, drift or metrics. ``load_tests.bench --peer`` starts it by itself on loopback:

    .venv/bin/python -m load_tests.peer MODEL.onnx --port 8101
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, File, HTTPException, UploadFile


def build_app(model_path: str, size: int = 640) -> FastAPI:
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(image: UploadFile = File(...)) -> dict[str, list[dict[str, object]]]:
        data = np.frombuffer(image.file.read(), np.uint8)
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if bgr is None:
            raise HTTPException(400, "not an image")
        h, w = bgr.shape[:2]
        scale = min(size / w, size / h)
        nw, nh = round(w * scale), round(h * scale)
        canvas = np.zeros((size, size, 3), np.uint8)
        px, py = (size - nw) // 2, (size - nh) // 2
        canvas[py : py + nh, px : px + nw] = cv2.resize(bgr, (nw, nh))
        x = canvas[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        out = session.run(None, {input_name: x})[0][0].T  # [anchors, 56]
        out = out[out[:, 4] >= 0.25]
        boxes = [[cx - bw / 2, cy - bh / 2, bw, bh] for cx, cy, bw, bh in out[:, :4].tolist()]
        keep = cv2.dnn.NMSBoxes(boxes, out[:, 4].tolist(), 0.25, 0.45) if len(out) else []
        dets = []
        for i in np.asarray(keep, dtype=int).reshape(-1):
            x1, y1, bw, bh = boxes[i]
            x1, y1 = (x1 - px) / scale, (y1 - py) / scale
            box = [x1, y1, x1 + bw / scale, y1 + bh / scale]
            dets.append({"box": box, "score": float(out[i, 4])})
        return {"detections": dets}

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="path of the ONNX file (the champion's own)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8101)
    ap.add_argument("--size", type=int, default=640, help="square model input side")
    args = ap.parse_args()
    uvicorn.run(build_app(args.model, args.size), host=args.host, port=args.port, workers=1,
                log_level="warning")  # fmt: skip


if __name__ == "__main__":
    main()
