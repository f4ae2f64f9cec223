"""OCR model (PP-OCR family): DB text detection, optional 180-degree line classifier, CTC
recognition. Plain Python over ONNX Runtime; the Ray deployment wraps it.

Every pre/post-processing number comes from the manifest (``preprocess``/``postprocess``,
see ``OcrPreprocess``/``OcrPostprocess``), so a new version with other thresholds needs no code.
Artifacts: roles ``det``, ``cls``, ``rec`` (ONNX) and ``dict`` (one character per line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deployments.images import as_array
from deployments.models import ocr_det, ocr_rec
from deployments.runtime import RuntimeSpec, create_session
from deployments.types import TextLine
from model_registry.manifest import Manifest
from serving.errors import InvalidInput, ManifestError, ModelValidationError

Triple = tuple[float, float, float]


class OcrPreprocess(BaseModel):
    """``manifest.preprocess`` of an OCR model. Unknown keys are refused (typos)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    color_order: Literal["bgr", "rgb"] = Field(
        default="bgr", description="Channel order the networks were trained on (PP-OCR: BGR)."
    )
    det_limit_side_len: int = Field(default=960, gt=0)
    det_limit_type: Literal["max", "min"] = Field(
        default="max", description="max: cap the long side; min: lift the short side."
    )
    det_max_side_len: int = Field(default=2000, gt=0, description="Hard cap on the long side.")
    det_min_side_len: int = Field(default=32, ge=0, description="Pad thinner images up to this.")
    det_max_aspect: float = Field(default=8.0, gt=1, description="Pad strips wider than this.")
    det_mean: Triple = (0.5, 0.5, 0.5)
    det_std: Triple = (0.5, 0.5, 0.5)
    # Batch limits differ by device: on the GPU bigger batches are cheaper per item; on the CPU
    # (one ORT thread per replica) per-item cost *grows* with the batch (measured: PP-OCRv4 det
    # 259 ms/image alone, 375 ms/image in a batch of 4; rec at 48x960 69 ms/crop alone,
    # 116 ms/crop in a batch of 8), so CPU batches stay small.
    det_max_batch: int = Field(default=8, gt=0, description="Images per detector call (GPU).")
    det_max_batch_cpu: int = Field(default=1, gt=0, description="Images per detector call (CPU).")
    det_max_pad_waste: float = Field(
        default=1.5,
        ge=1,
        description="Batch images of unequal size while padded/real area <= this.",
    )
    use_cls: bool = True
    cls_height: int = Field(default=48, gt=0)
    cls_width: int = Field(default=192, gt=0)
    cls_mean: Triple = (0.5, 0.5, 0.5)
    cls_std: Triple = (0.5, 0.5, 0.5)
    rec_height: int = Field(default=48, gt=0)
    rec_min_width: int = Field(default=320, gt=0)
    rec_max_width: int = Field(default=2400, gt=0, description="Wider crops are squeezed.")
    rec_mean: Triple = (0.5, 0.5, 0.5)
    rec_std: Triple = (0.5, 0.5, 0.5)
    rec_max_batch: int = Field(default=64, gt=0, description="Crops per cls/rec call (GPU).")
    rec_max_batch_cpu: int = Field(default=6, gt=0, description="Crops per cls/rec call (CPU).")


class OcrPostprocess(BaseModel):
    """``manifest.postprocess`` of an OCR model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    det_thresh: float = Field(default=0.3, gt=0, lt=1, description="Pixel text probability.")
    det_box_thresh: float = Field(default=0.5, ge=0, le=1, description="Mean prob of a box.")
    det_unclip_ratio: float = Field(default=1.6, gt=0)
    det_max_candidates: int = Field(default=1000, gt=0)
    det_min_size: float = Field(default=3.0, ge=0)
    det_use_dilation: bool = False
    cls_labels: list[str] = Field(default_factory=lambda: ["0", "180"])
    cls_thresh: float = Field(default=0.9, ge=0, le=1)
    use_space_char: bool = Field(default=True, description="rec classes = blank+dict+space.")
    drop_score: float = Field(default=0.5, ge=0, le=1, description="Min line confidence.")


def _params(model: type[BaseModel], raw: dict[str, Any], where: str) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        errs = "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
            for err in e.errors()
        )
        raise ManifestError(f"invalid OCR {where}: {errs}") from None


def as_rgb_uint8(img: Any, index: int = 0) -> np.ndarray:
    """Accept HxWx3 (and, leniently, HxW or HxWx4) uint8 arrays; refuse anything else."""
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise InvalidInput(f"image {index} must be uint8, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or min(arr.shape[:2]) < 1:
        raise InvalidInput(f"image {index} must be HxWx3 RGB, got shape {tuple(arr.shape)}")
    return arr[:, :, :3]


class OcrModel:
    """Implements the ``deployments.loader.Model`` protocol for ``task: ocr``."""

    def __init__(self, model_dir: Path, manifest: Manifest, runtime_spec: RuntimeSpec) -> None:
        self.model_dir = Path(model_dir)
        self.manifest = manifest
        self.pre: OcrPreprocess = _params(OcrPreprocess, manifest.preprocess, "preprocess")
        self.post: OcrPostprocess = _params(OcrPostprocess, manifest.postprocess, "postprocess")
        self.ort_calls = 0
        preferred = [str(r) for r in manifest.runtimes]
        self._det, self.runtime = create_session(
            manifest.artifact_path(self.model_dir, "det"), runtime_spec, preferred
        )
        self._rec, _ = create_session(
            manifest.artifact_path(self.model_dir, "rec"), runtime_spec, preferred
        )
        self._cls: Any = None
        if self.pre.use_cls:
            self._cls, _ = create_session(
                manifest.artifact_path(self.model_dir, "cls"), runtime_spec, preferred
            )
        on_cpu = self.runtime.provider == "CPUExecutionProvider"
        self.det_max_batch = self.pre.det_max_batch_cpu if on_cpu else self.pre.det_max_batch
        self.rec_max_batch = self.pre.rec_max_batch_cpu if on_cpu else self.pre.rec_max_batch
        self.characters = ocr_rec.read_dict(manifest.artifact_path(self.model_dir, "dict"))
        self.decoder = ocr_rec.CtcDecoder(self.characters, self.post.use_space_char)
        self._det_mean, self._det_std = _vec(self.pre.det_mean), _vec(self.pre.det_std)
        self._cls_mean, self._cls_std = _vec(self.pre.cls_mean), _vec(self.pre.cls_std)
        self._rec_mean, self._rec_std = _vec(self.pre.rec_mean), _vec(self.pre.rec_std)

    # --- Model protocol --------------------------------------------------------------------

    def predict(self, inputs: list[Any]) -> list[list[TextLine]]:
        images = [
            self._to_model_order(as_rgb_uint8(as_array(img), i)) for i, img in enumerate(inputs)
        ]
        if not images:
            return []
        quads = self._detect(images)
        crops = [ocr_det.crop_quad(images[i], q) for i, qs in enumerate(quads) for q in qs]
        if crops and self._cls is not None:
            crops = self._orient(crops)
        decoded = self._recognise(crops) if crops else []
        results: list[list[TextLine]] = []
        k = 0
        for qs in quads:
            lines = []
            for q in qs:
                d = decoded[k]
                k += 1
                if d.text and d.confidence >= self.post.drop_score:
                    lines.append(_text_line(d, q))
            results.append(lines)
        return results

    def example_input(self) -> np.ndarray:
        return render_text(["CANARY 2048", "OCR SMOKE TEST"])

    def check_io(self) -> None:
        problems: list[str] = []
        channels = self.manifest.input.channels
        _check_session(
            problems, "det", self._det, (None, channels, None, None), (None, 1, None, None)
        )
        rec_in = (None, channels, self.pre.rec_height, None)
        _check_session(problems, "rec", self._rec, rec_in, (None, None, None))
        n_cls = ocr_rec.class_count(len(self.characters), self.post.use_space_char)
        got = self._rec.get_outputs()[0].shape[-1]
        if isinstance(got, int) and got != n_cls:
            problems.append(
                f"dict {self.manifest.artifacts['dict']!r} has {len(self.characters)} characters, "
                f"so the rec output needs {n_cls} classes (blank + characters"
                f"{' + space' if self.post.use_space_char else ''}), but the rec model outputs "
                f"{got}: wrong dict for this model?"
            )
        if self._cls is not None:
            cls_in = (None, channels, self.pre.cls_height, self.pre.cls_width)
            _check_session(problems, "cls", self._cls, cls_in, (None, len(self.post.cls_labels)))
        if problems:
            raise ModelValidationError(
                f"OCR model {self.manifest.name!r} does not match its manifest: "
                + "; ".join(problems),
                problems=problems,
            )

    # --- stages ----------------------------------------------------------------------------

    def _to_model_order(self, rgb: np.ndarray) -> np.ndarray:
        if self.pre.color_order == "bgr":
            return np.ascontiguousarray(rgb[:, :, ::-1])
        return np.ascontiguousarray(rgb)

    def _detect(self, images: list[np.ndarray]) -> list[list[ocr_det.Quad]]:
        pre, post = self.pre, self.post
        prepared = [
            ocr_det.prepare_det_input(
                img,
                limit_side_len=pre.det_limit_side_len,
                limit_type=pre.det_limit_type,
                max_side_len=pre.det_max_side_len,
                min_side=pre.det_min_side_len,
                max_aspect=pre.det_max_aspect,
                mean=self._det_mean,
                std=self._det_std,
            )
            for img in images
        ]
        shapes = [(p.tensor.shape[1], p.tensor.shape[2]) for p in prepared]
        groups = ocr_det.group_for_batches(shapes, self.det_max_batch, pre.det_max_pad_waste)
        out: list[list[ocr_det.Quad]] = [[] for _ in images]
        name = self._det.get_inputs()[0].name
        for group in groups:
            batch = ocr_det.stack_padded([prepared[i].tensor for i in group])
            maps = self._det.run(None, {name: batch})[0]
            self.ort_calls += 1
            for k, i in enumerate(group):
                p, (rh, rw) = prepared[i], shapes[i]
                found = ocr_det.db_boxes(
                    maps[k, 0, :rh, :rw],
                    p.padded_hw,
                    thresh=post.det_thresh,
                    box_thresh=post.det_box_thresh,
                    unclip_ratio=post.det_unclip_ratio,
                    max_candidates=post.det_max_candidates,
                    min_size=post.det_min_size,
                    use_dilation=post.det_use_dilation,
                )
                h, w = p.source_hw
                quads = [ocr_det.clip_quad(q, h, w) for q, _ in found]
                # Boxes that lie (almost) entirely in the padding are not text of this image.
                quads = [q for q in quads if _side_lengths(q) > 3]
                out[i] = [quads[j] for j in ocr_det.reading_order(quads)]
        return out

    def _orient(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Turn lines the classifier sees upside down (label '180') by 180 degrees."""
        pre, post = self.pre, self.post
        name = self._cls.get_inputs()[0].name
        crops = list(crops)
        for chunk in ocr_rec.chunks_by_width(crops, self.rec_max_batch):
            batch = ocr_rec.cls_batch(
                [crops[i] for i in chunk],
                height=pre.cls_height,
                width=pre.cls_width,
                mean=self._cls_mean,
                std=self._cls_std,
            )
            probs = self._cls.run(None, {name: batch})[0]
            self.ort_calls += 1
            for k, i in enumerate(chunk):
                label = int(np.argmax(probs[k]))
                if "180" in post.cls_labels[label] and probs[k, label] > post.cls_thresh:
                    crops[i] = cv2.rotate(crops[i], cv2.ROTATE_180)
        return crops

    def _recognise(self, crops: list[np.ndarray]) -> list[ocr_rec.Decoded]:
        pre = self.pre
        name = self._rec.get_inputs()[0].name
        out: list[ocr_rec.Decoded | None] = [None] * len(crops)
        for chunk in ocr_rec.chunks_by_width(crops, self.rec_max_batch):
            batch, widths = ocr_rec.rec_batch(
                [crops[i] for i in chunk],
                height=pre.rec_height,
                min_width=pre.rec_min_width,
                max_width=pre.rec_max_width,
                mean=self._rec_mean,
                std=self._rec_std,
            )
            probs = self._rec.run(None, {name: batch})[0]
            self.ort_calls += 1
            steps = ocr_rec.valid_steps(widths, batch.shape[3], probs.shape[1])
            for i, d in zip(chunk, self.decoder.decode(probs, steps), strict=True):
                out[i] = d
        return [d for d in out if d is not None]


def _vec(values: Triple) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def _side_lengths(q: ocr_det.Quad) -> float:
    return float(min(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[0] - q[3])))


def _text_line(d: ocr_rec.Decoded, quad: ocr_det.Quad) -> TextLine:
    polygon = tuple((float(x), float(y)) for x, y in quad)
    xs, ys = quad[:, 0], quad[:, 1]
    box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
    return TextLine(text=d.text, confidence=round(d.confidence, 6), polygon=polygon, box=box)


def _check_session(
    problems: list[str],
    role: str,
    session: Any,
    want_in: tuple[int | None, ...],
    want_out: tuple[int | None, ...],
) -> None:
    """Compare the first input/output of ``session`` with the expected shape; ``None`` or a
    symbolic dimension in either matches anything."""
    for kind, args, want in (
        ("input", session.get_inputs(), want_in),
        ("output", session.get_outputs(), want_out),
    ):
        if len(args) != 1:
            problems.append(f"{role} model has {len(args)} {kind}s, expected 1")
            continue
        arg = args[0]
        shape = list(arg.shape)
        if len(shape) != len(want):
            problems.append(
                f"{role} {kind} {arg.name!r} has rank {len(shape)} (shape {shape}), "
                f"expected rank {len(want)}"
            )
            continue
        for axis, (got, exp) in enumerate(zip(shape, want, strict=True)):
            if exp is not None and isinstance(got, int) and got != exp:
                problems.append(
                    f"{role} {kind} {arg.name!r} has {got} at axis {axis} (shape {shape}), "
                    f"expected {exp}"
                )
        if kind == "input" and arg.type != "tensor(float)":
            problems.append(f"{role} input {arg.name!r} is {arg.type}, expected tensor(float)")


def render_text(lines: list[str], width: int = 480, line_height: int = 64) -> np.ndarray:
    """White RGB image with ``lines`` in black (a synthetic input for smoke predictions)."""
    img = np.full((line_height * len(lines) + line_height // 2, width, 3), 255, dtype=np.uint8)
    for k, text in enumerate(lines):
        org = (24, line_height * (k + 1) - 8)
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 1.1, (0, 0, 0), 2, cv2.LINE_AA)
    return img
