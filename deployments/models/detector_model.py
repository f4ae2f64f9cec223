"""Person detector: letterbox, optional overlapping tiles, one ORT call per batch, decode.

Which network sits behind the manifest is told by ``postprocess.decoder``:

* ``blazepose``: MediaPipe's pose detector converted to ONNX (``input [N,224,224,3]`` in
  [-1, 1] -> ``boxes [N,2254,12]``, ``scores [N,2254,1]``), see :mod:`deployments.models.blazepose`;
* ``yolo_pose``: an Ultralytics YOLO-pose export (``images [N,3,H,W]`` in [0, 1] ->
  ``output0 [N,56,A]``), see :mod:`deployments.models.yolo_pose`.

BlazePose is built for one person near the camera. ``postprocess.tiling`` (``grid: [cols,
rows]``, ``overlap`` as a fraction of a tile, ``include_full``) also looks at overlapping crops,
so people who are small in the frame are found too. Every crop of every image in a batch goes
through a single ``session.run`` (stacked on the batch dimension); detections are mapped back to
original-image pixels and merged across crops with the decoder's own NMS.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deployments.images import EncodedImage
from deployments.models import blazepose, yolo_pose
from deployments.runtime import RuntimeInfo, RuntimeSpec, create_session
from deployments.types import Detection, Keypoint
from model_registry.manifest import Manifest
from serving.errors import InvalidInput, ManifestError, ModelFailure, ModelValidationError

Decoder = Literal["blazepose", "yolo_pose"]
_DEFAULTS: dict[str, dict[str, Any]] = {
    "blazepose": {"score_threshold": 0.5, "iou_threshold": 0.3, "input_range": (-1.0, 1.0)},
    "yolo_pose": {"score_threshold": 0.25, "iou_threshold": 0.45, "input_range": (0.0, 1.0)},
}
_LAYOUT = {"blazepose": "NHWC", "yolo_pose": "NCHW"}


class Tiling(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    grid: tuple[int, int] = Field(description="[columns, rows] of tiles over the image.")
    overlap: float = Field(default=0.25, ge=0.0, lt=0.9, description="Fraction of a tile.")
    include_full: bool = Field(default=True, description="Also run the whole image.")

    def windows(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """Crop windows (x1, y1, x2, y2) in pixels; the full image first if included."""
        out = [(0, 0, width, height)] if self.include_full else []
        xs = _spans(width, self.grid[0], self.overlap)
        ys = _spans(height, self.grid[1], self.overlap)
        out += [(x1, y1, x2, y2) for y1, y2 in ys for x1, x2 in xs]
        return list(dict.fromkeys(out))  # a 1x1 grid with include_full is one window


def _spans(length: int, n: int, overlap: float) -> list[tuple[int, int]]:
    size = length / (n - (n - 1) * overlap)
    step = size * (1 - overlap)
    return [(round(i * step), min(length, round(i * step + size))) for i in range(n)]


class DetectorPostprocess(BaseModel):
    """``manifest.postprocess`` of a detection model (unknown keys refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decoder: Decoder = "blazepose"
    score_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    iou_threshold: float | None = Field(default=None, gt=0.0, le=1.0)
    max_detections: int = Field(default=20, ge=1, le=1000)
    tiling: Tiling | None = None
    required_keypoints: list[str] = Field(
        default_factory=list,
        description="A box is a person only if each of these keypoints is seen (pose decoders).",
    )
    keypoint_threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Confidence at which a keypoint counts as seen."
    )


class DetectorPreprocess(BaseModel):
    """``manifest.preprocess``: pixels 0..255 map linearly onto ``input_range``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_range: tuple[float, float] | None = None
    pad_value: int = Field(default=0, ge=0, le=255, description="Letterbox border pixel value.")
    resize: Literal["area", "linear"] = Field(
        default="area",
        description=(
            "How an image shrinks onto the input. 'area' averages (best where crops shrink a "
            "lot); 'linear' is bilinear down to half size and area below, as Ultralytics "
            "trains: 0.7 instead of 6.3 ms for an 810x1080 photo onto 480x640 (a JPEG's larger "
            "reductions happen at decode, in the DCT domain)."
        ),
    )
    rect_inputs: list[tuple[int, int]] = Field(
        default_factory=list,
        description=(
            "Other fixed input sizes (width, height) of the same network, each in artifact "
            "'model@<w>x<h>': an image runs on the smallest that holds its letterbox at the "
            "square input's scale (less padding, less compute; Ultralytics' 'rect')."
        ),
    )


def letterbox(
    image: np.ndarray,
    width: int,
    height: int,
    pad_value: int = 0,
    resize: Literal["area", "linear"] = "area",
) -> tuple[np.ndarray, float, float, float]:
    """Resize keeping the aspect ratio, centred on a ``pad_value`` canvas.

    ``resize`` is how it shrinks (``DetectorPreprocess.resize``). Returns (canvas, scale,
    pad_x, pad_y): original pixel p sits at p * scale + pad.
    """
    import cv2

    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    area_below = 1.0 if resize == "area" else 0.5
    interp = cv2.INTER_AREA if scale < area_below else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    canvas = np.full((height, width, 3), pad_value, dtype=np.uint8)
    px, py = (width - nw) // 2, (height - nh) // 2
    canvas[py : py + nh, px : px + nw] = resized
    return canvas, nw / w, float(px), float(py)


class DetectorModel:
    """Plain (Ray-free) detector implementing ``deployments.loader.Model``."""

    def __init__(self, model_dir: Path, manifest: Manifest, runtime_spec: RuntimeSpec) -> None:
        self.manifest = manifest
        self.model_dir = Path(model_dir)
        try:
            self.post = DetectorPostprocess.model_validate(manifest.postprocess)
            self.pre = DetectorPreprocess.model_validate(manifest.preprocess)
        except ValidationError as e:
            raise ManifestError(f"invalid detector manifest for {manifest.name!r}: {e}") from None
        defaults = _DEFAULTS[self.post.decoder]
        self.score_threshold = _default(self.post.score_threshold, defaults["score_threshold"])
        self.iou_threshold = _default(self.post.iou_threshold, defaults["iou_threshold"])
        self.input_range = _default(self.pre.input_range, defaults["input_range"])
        self.label = manifest.labels[0] if manifest.labels else "person"
        names = (
            blazepose.KEYPOINT_NAMES
            if self.post.decoder == "blazepose"
            else yolo_pose.KEYPOINT_NAMES
        )
        unknown = sorted(set(self.post.required_keypoints) - set(names))
        if unknown or (self.post.required_keypoints and self.post.decoder == "blazepose"):
            raise ManifestError(
                f"postprocess.required_keypoints {self.post.required_keypoints} of "
                f"{manifest.name!r}: decoder {self.post.decoder!r} gives keypoint confidences "
                f"only for yolo_pose's {list(yolo_pose.KEYPOINT_NAMES)}"
            )
        self._required = [names.index(n) for n in self.post.required_keypoints]
        path = manifest.artifact_path(self.model_dir, "model")
        if not path.is_file():
            raise ModelValidationError(f"model artifact {manifest.artifacts['model']!r} missing")
        self.runtime: RuntimeInfo
        self.session, self.runtime = create_session(path, runtime_spec, list(manifest.runtimes))
        self._sessions = {(manifest.input.width, manifest.input.height): self.session}
        for w, h in self.pre.rect_inputs:
            if (
                self.post.decoder != "yolo_pose"
                or w > manifest.input.width
                or h > manifest.input.height
            ):
                raise ManifestError(
                    f"preprocess.rect_inputs {w}x{h} of {manifest.name!r}: rectangular inputs "
                    f"are for yolo_pose and fit inside {manifest.input.width}x"
                    f"{manifest.input.height}"
                )
            rpath = manifest.artifact_path(self.model_dir, f"model@{w}x{h}")
            if not rpath.is_file():
                raise ModelValidationError(f"model artifact {rpath.name!r} missing")
            self._sessions[(w, h)], _ = create_session(rpath, runtime_spec, list(manifest.runtimes))
        self.ort_calls = 0
        self.stage_times: dict[str, float] = {}
        size = manifest.input.width
        self.anchors = blazepose.ssd_anchors(size) if self.post.decoder == "blazepose" else None

    # --- Model protocol --------------------------------------------------------------------

    def predict(self, images: list[np.ndarray | EncodedImage]) -> list[list[Detection]]:
        if not images:
            return []
        t0 = time.perf_counter()
        crops, shapes, metas, sizes = [], [], [], []
        for i, raw in enumerate(images):
            image = self._pixels(raw, i)
            ih, iw = image.shape[:2]
            oh, ow = (raw.height, raw.width) if isinstance(raw, EncodedImage) else (ih, iw)
            sizes.append((oh, ow))
            # A reduced decode's pixel -> the original's (1.0 for a full-size image).
            grow = np.array([ow / iw, oh / ih, ow / iw, oh / ih])
            for x1, y1, x2, y2 in self._windows(iw, ih):
                shape = self.input_shape(x2 - x1, y2 - y1)
                canvas, scale, px, py = letterbox(
                    image[y1:y2, x1:x2], *shape, self.pre.pad_value, self.pre.resize
                )
                crops.append(canvas)
                shapes.append(shape)
                metas.append((i, scale, x1 - px / scale, y1 - py / scale, grow))
        # One ORT call per input shape in the batch (one in all for same-shaped images).
        groups: dict[tuple[int, int], list[int]] = {}
        for k, shape in enumerate(shapes):
            groups.setdefault(shape, []).append(k)
        tensors = {shape: self._tensor([crops[k] for k in ks]) for shape, ks in groups.items()}
        t1 = time.perf_counter()
        per_crop: list[list[np.ndarray]] = [[] for _ in crops]
        for shape, ks in groups.items():
            outputs = self._run(shape, tensors[shape])
            for j, k in enumerate(ks):
                per_crop[k] = [o[j] for o in outputs]
        t2 = time.perf_counter()
        found: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in images]
        for row, (i, scale, ox, oy, grow) in enumerate(metas):
            boxes, scores, kps = self._decode(per_crop[row])
            boxes = (boxes / scale + np.array([ox, oy, ox, oy])) * grow
            kps[..., :2] = (kps[..., :2] / scale + np.array([ox, oy])) * grow[:2]
            found[i].append((boxes, scores, kps))
        out = [
            self._detections(parts, sizes[i], merge=len(parts) > 1) for i, parts in enumerate(found)
        ]
        # Of this (the last) call: the replica exports them as stage latencies.
        self.stage_times = {
            "decode": t1 - t0,
            "model": t2 - t1,
            "postprocess": time.perf_counter() - t2,
        }
        return out

    def example_input(self) -> np.ndarray:
        """A 160x120 RGB image with a gradient and a bright figure-like block."""
        ys, xs = np.mgrid[0:120, 0:160]
        image = np.stack([xs * 255 // 159, ys * 255 // 119, (xs + ys) * 255 // 278], axis=-1)
        image[30:110, 70:90] = (220, 180, 150)
        return image.astype(np.uint8)

    def check_io(self) -> None:
        """Compare the ONNX graph's inputs/outputs with the decoder and ``manifest.input``."""
        spec, decoder = self.manifest.input, self.post.decoder
        problems: list[str] = []
        if spec.layout != _LAYOUT[decoder]:
            problems.append(
                f"decoder {decoder!r} needs input layout {_LAYOUT[decoder]}, "
                f"manifest says {spec.layout}"
            )
        inputs = self.session.get_inputs()
        want = (
            [spec.height, spec.width, spec.channels]
            if spec.layout == "NHWC"
            else [spec.channels, spec.height, spec.width]
        )
        if [i.name for i in inputs] != [self._input_name()]:
            problems.append(f"inputs {[i.name for i in inputs]} != [{self._input_name()!r}]")
        else:
            problems += _shape_problems("input", inputs[0], want)
        outputs = {o.name: o for o in self.session.get_outputs()}
        if sorted(outputs) != sorted(self._output_names()):
            problems.append(f"outputs {sorted(outputs)} != {sorted(self._output_names())}")
        elif self.anchors is not None:
            a = len(self.anchors)
            if spec.width != spec.height:
                problems.append(f"blazepose input must be square, got {spec.width}x{spec.height}")
            problems += _shape_problems("boxes", outputs["boxes"], [a, blazepose.NUM_COORDS])
            problems += _shape_problems("scores", outputs["scores"], [a, 1])
        else:
            problems += _shape_problems("output0", outputs["output0"], [yolo_pose.NUM_ROWS, None])
        for (w, h), session in self._sessions.items():
            if session is self.session:
                continue
            name = f"model@{w}x{h}"
            problems += _shape_problems(f"{name} input", session.get_inputs()[0], [3, h, w])
            out = session.get_outputs()[0]
            problems += _shape_problems(f"{name} output0", out, [yolo_pose.NUM_ROWS, None])
        if problems:
            raise ModelValidationError(
                f"model {self.manifest.name!r} does not match its manifest "
                f"(decoder {decoder!r}): " + "; ".join(problems),
                problems=problems,
            )

    # --- internals -------------------------------------------------------------------------

    def input_shape(self, width: int, height: int) -> tuple[int, int]:
        """The model input (width, height) a ``width`` x ``height`` crop runs on: the smallest
        of the rectangular inputs that holds its letterbox at the square input's scale, else
        the square one."""
        sw, sh = self.manifest.input.width, self.manifest.input.height
        scale = min(sw / width, sh / height)
        nw, nh = max(1, round(width * scale)), max(1, round(height * scale))
        fits = [(w, h) for w, h in self.pre.rect_inputs if w >= nw and h >= nh]
        return min(fits, key=lambda s: s[0] * s[1], default=(sw, sh))

    def _tensor(self, crops: list[np.ndarray]) -> np.ndarray:
        lo, hi = self.input_range
        batch = np.stack(crops).astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)
        if self.manifest.input.layout == "NCHW":
            batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        return batch

    def _run(self, shape: tuple[int, int], batch: np.ndarray) -> list[np.ndarray]:
        try:
            out: list[np.ndarray] = self._sessions[shape].run(
                self._output_names(), {self._input_name(): batch}
            )
        except Exception as e:  # ORT raises its own types; callers see one platform error
            raise ModelFailure(
                f"detector {self.manifest.name!r} failed on a batch of {len(batch)} crops: "
                f"{type(e).__name__}"
            ) from e
        finally:
            self.ort_calls += 1
        return out

    def _windows(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        return (
            self.post.tiling.windows(width, height) if self.post.tiling else [(0, 0, width, height)]
        )

    def _pixels(self, raw: Any, index: int) -> np.ndarray:
        """An array as it is; an encoded image decoded at the largest DCT reduction that keeps
        every crop at least as large as the model input it is letterboxed to."""
        if not isinstance(raw, EncodedImage):
            return _as_rgb(raw, index)
        w, h = self.manifest.input.width, self.manifest.input.height
        room = min(
            max((x2 - x1) / w, (y2 - y1) / h)
            for x1, y1, x2, y2 in self._windows(raw.width, raw.height)
        )
        return _as_rgb(raw.decode(room), index)

    def _input_name(self) -> str:
        return blazepose.INPUT_NAME if self.anchors is not None else yolo_pose.INPUT_NAME

    def _output_names(self) -> list[str]:
        if self.anchors is not None:
            return list(blazepose.OUTPUT_NAMES)
        return [yolo_pose.OUTPUT_NAME]

    def _decode(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One crop's outputs -> boxes, scores, keypoints [K, P, 3] in model-input pixels."""
        if self.anchors is None:
            return yolo_pose.decode(
                outputs[0], self.score_threshold, self.iou_threshold, self.post.max_detections
            )
        boxes, scores, kps = blazepose.decode(
            outputs[0], outputs[1], self.anchors, self.manifest.input.width,
            self.score_threshold, self.iou_threshold,
        )  # fmt: skip
        return boxes, scores, np.concatenate([kps, np.full((*kps.shape[:2], 1), np.nan)], -1)

    def _merge(self, boxes: np.ndarray, scores: np.ndarray, kps: np.ndarray) -> Any:
        if self.anchors is None:
            return yolo_pose.nms(boxes, scores, kps, self.iou_threshold, self.post.max_detections)
        return blazepose.merge_views(boxes, scores, kps, self.iou_threshold)

    def _detections(
        self,
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
        hw: tuple[int, ...],
        merge: bool,
    ) -> list[Detection]:
        boxes = np.concatenate([p[0] for p in parts])
        scores = np.concatenate([p[1] for p in parts])
        kps = np.concatenate([p[2] for p in parts])
        if merge and len(scores):
            boxes, scores, kps = self._merge(boxes, scores, kps)
        h, w = hw
        names = blazepose.KEYPOINT_NAMES if self.anchors is not None else yolo_pose.KEYPOINT_NAMES
        out = []
        for k in np.argsort(-scores, kind="stable")[: self.post.max_detections]:
            box = np.clip(boxes[k], 0, [w, h, w, h])
            if box[2] - box[0] <= 0 or box[3] - box[1] <= 0:
                continue
            # A pose model also fires on animals' faces (eyes and nose); a person has a torso.
            if self._required and np.min(kps[k][self._required, 2]) < self.post.keypoint_threshold:
                continue
            points = tuple(
                Keypoint(n, float(x), float(y), None if np.isnan(c) else float(c))
                for n, (x, y, c) in zip(names, kps[k], strict=True)
            )
            body = None
            if self.anchors is not None:
                body = blazepose.body_box(kps[k][0, :2], kps[k][1, :2], w, h)
            out.append(
                Detection(
                    box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                    score=float(scores[k]),
                    label=self.label,
                    keypoints=points,
                    body_box=body,
                )
            )
        return out


def _shape_problems(name: str, arg: Any, want: Sequence[int | None]) -> list[str]:
    """ORT reports symbolic dims as str/None; the batch dim must be one of those."""
    shape = list(arg.shape)
    problems = []
    if arg.type != "tensor(float)":
        problems.append(f"{name} has type {arg.type}, expected tensor(float)")
    if len(shape) != len(want) + 1:
        return [*problems, f"{name} has shape {shape}, expected [batch, *{want}]"]
    if isinstance(shape[0], int) and shape[0] > 0:
        problems.append(
            f"{name} has a fixed batch dimension {shape[0]}; it must be dynamic so a whole "
            "batch runs in one call"
        )
    for got, exp in zip(shape[1:], want, strict=True):
        if exp is not None and got != exp:
            problems.append(f"{name} has shape {shape}, expected [batch, *{want}]")
            break
    return problems


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


def _as_rgb(image: Any, index: int) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise InvalidInput(f"image {index} has dtype {arr.dtype}, expected uint8 RGB")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise InvalidInput(f"image {index} has shape {list(arr.shape)}, expected HxWx3 RGB")
    return arr
