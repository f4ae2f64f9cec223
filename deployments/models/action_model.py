"""Action classifier: one label per tracked person, from the track's feature sequence.

The ONNX model takes ``sequence [N, T, F]`` (float32) and returns ``logits [N, C]``. ``T`` and
``F`` are ``manifest.input.width`` / ``.height`` (layout ``NTF``). The keypoint layout the model
consumes is ``manifest.preprocess.keypoint_layout`` (``blazepose4``, the default for versions
from before layouts existed: :mod:`deployments.models.action_features`; ``coco17``:
:mod:`deployments.models.action_features_coco`); the feature list it was trained on is
``manifest.preprocess.features`` and must equal that layout's ``FEATURE_NAMES``, the only
features this code computes for it. Scores are ``softmax(logits / postprocess.temperature)``
over ``manifest.labels`` (a temperature fitted at training time calibrates them; never clipped).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deployments.models import action_features, action_features_coco
from deployments.models.keypoints import COCO17
from deployments.runtime import RuntimeInfo, RuntimeSpec, create_session
from deployments.types import ActionPrediction, Detection, Keypoint, Track, TrackPoint
from model_registry.manifest import Manifest
from serving.errors import InvalidInput, ManifestError, ModelValidationError

INPUT_NAME = "sequence"
OUTPUT_NAME = "logits"
# The feature module of each keypoint layout (FEATURE_NAMES, batch_features).
_FEATURES: dict[str, ModuleType] = {
    "blazepose4": action_features,
    "coco17": action_features_coco,
}


class ActionPreprocess(BaseModel):
    """``manifest.preprocess`` of an action model (unknown keys refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seq_len: int = Field(ge=2, description="Points each track is resampled to (= input.width).")
    features: list[str] = Field(description="Feature names, in model input order.")
    keypoint_layout: Literal["blazepose4", "coco17"] = Field(
        default="blazepose4", description="Keypoints the features are computed from."
    )


class ActionPostprocess(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    activation: Literal["softmax"] = "softmax"
    temperature: float = Field(default=1.0, gt=0, description="Logits are divided by it.")


class ActionModel:
    """Plain (Ray-free) action classifier implementing ``deployments.loader.Model``."""

    manifest: Manifest
    runtime: RuntimeInfo
    ort_calls: int

    def __init__(self, model_dir: Path, manifest: Manifest, runtime_spec: RuntimeSpec) -> None:
        self.manifest = manifest
        self.model_dir = Path(model_dir)
        try:
            self.pre = ActionPreprocess.model_validate(manifest.preprocess)
            self.post = ActionPostprocess.model_validate(manifest.postprocess)
        except ValidationError as e:
            raise ManifestError(f"invalid action manifest for {manifest.name!r}: {e}") from None
        path = manifest.artifact_path(self.model_dir, "model")
        if not path.is_file():
            raise ModelValidationError(f"model artifact {manifest.artifacts['model']!r} missing")
        self.session, self.runtime = create_session(path, runtime_spec, list(manifest.runtimes))
        self.ort_calls = 0
        self.labels = list(manifest.labels)
        self.seq_len = self.pre.seq_len
        self.features = _FEATURES[self.pre.keypoint_layout]

    # --- Model protocol --------------------------------------------------------------------

    def predict(self, tracks: list[Track]) -> list[ActionPrediction]:
        """One prediction per track; the whole batch is a single ``session.run``."""
        if not tracks:
            return []
        for i, track in enumerate(tracks):
            if not isinstance(track, Track):
                raise InvalidInput(f"item {i} is a {type(track).__name__}, not a Track")
            if not track.points:
                raise InvalidInput(f"track {track.track_id} (item {i}) has no points")
            if not track.fps > 0:
                raise InvalidInput(f"track {track.track_id} has fps {track.fps!r}; must be > 0")
        x = self.features.batch_features(tracks, self.seq_len)
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: x})
        self.ort_calls += 1
        logits = np.asarray(logits, dtype=np.float64) / self.post.temperature
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = z / z.sum(axis=1, keepdims=True)
        out = []
        for row in probs:
            best = int(np.argmax(row))
            out.append(
                ActionPrediction(
                    label=self.labels[best],
                    confidence=float(row[best]),
                    scores={label: float(p) for label, p in zip(self.labels, row, strict=True)},
                )
            )
        return out

    def example_input(self) -> Track:
        """A person walking right across a 640x480 clip at 10 fps, in the model's layout."""
        if self.pre.keypoint_layout == "coco17":
            return _coco_walker(self.seq_len)
        points = []
        for i in range(self.seq_len):
            hx, hy, r = 120.0 + 12.0 * i, 300.0 + 3.0 * (i % 2), 110.0
            det = Detection(
                box=(hx - 30, hy - 150, hx + 30, hy - 90),
                score=0.9,
                keypoints=(
                    Keypoint("mid_hip", hx, hy),
                    Keypoint("full_body", hx, hy - r),
                    Keypoint("mid_shoulder", hx, hy - 70),
                    Keypoint("upper_body", hx, hy - 140),
                ),
                body_box=(hx - r, hy - r, hx + r, hy + r),
            )
            points.append(TrackPoint(i, det))
        return Track(track_id=0, points=tuple(points), frame_size=(640, 480), fps=10.0)

    def check_io(self) -> None:
        """Compare the ONNX graph with ``manifest.input``/``labels``/``preprocess.features``."""
        spec, problems = self.manifest.input, []
        if spec.layout != "NTF":
            problems.append(f"input layout must be NTF (batch, time, features), got {spec.layout}")
        if spec.width != self.pre.seq_len:
            problems.append(f"input.width {spec.width} != preprocess.seq_len {self.pre.seq_len}")
        computed = list(self.features.FEATURE_NAMES)
        if list(self.pre.features) != computed:
            problems.append(
                f"preprocess.features {self.pre.features} differ from the features this server "
                f"computes for keypoint_layout {self.pre.keypoint_layout!r} {computed}"
            )
        if spec.height != len(self.pre.features):
            problems.append(
                f"input.height {spec.height} != {len(self.pre.features)} preprocess.features"
            )
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            problems.append(f"labels must be >= 2 distinct names, got {self.labels}")

        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in inputs] != [INPUT_NAME]:
            problems.append(f"ONNX inputs {[i.name for i in inputs]} != [{INPUT_NAME!r}]")
        else:
            problems += _shape_problems("input", inputs[0].shape, [spec.width, spec.height])
        if [o.name for o in outputs] != [OUTPUT_NAME]:
            problems.append(f"ONNX outputs {[o.name for o in outputs]} != [{OUTPUT_NAME!r}]")
        else:
            problems += _shape_problems("output", outputs[0].shape, [len(self.labels)])
        problems += self._metadata_problems()
        if problems:
            raise ModelValidationError(
                f"model {self.manifest.name!r} does not match its manifest: " + "; ".join(problems),
                problems=problems,
            )

    # --- internals -------------------------------------------------------------------------

    def _metadata_problems(self) -> list[str]:
        """Labels/features the trainer stamped into the ONNX file, when it did."""
        meta = self.session.get_modelmeta().custom_metadata_map
        problems = []
        for key, want in (("labels", self.labels), ("features", list(self.pre.features))):
            if key in meta:
                try:
                    got = json.loads(meta[key])
                except json.JSONDecodeError:
                    problems.append(f"ONNX metadata {key!r} is not JSON: {meta[key][:80]!r}")
                    continue
                if got != want:
                    problems.append(f"ONNX metadata {key} {got} != manifest {want}")
        return problems


def _coco_walker(n: int) -> Track:
    """A YOLO-pose-shaped person (17 COCO points, full-body box) walking right at 10 fps."""
    # Standing pose in pixels relative to the hip centre (x right, y down), a 230 px person.
    base = {
        "nose": (0, -120), "left_eye": (4, -124), "right_eye": (-4, -124),
        "left_ear": (9, -120), "right_ear": (-9, -120),
        "left_shoulder": (18, -95), "right_shoulder": (-18, -95),
        "left_elbow": (22, -55), "right_elbow": (-22, -55),
        "left_wrist": (24, -18), "right_wrist": (-24, -18),
        "left_hip": (12, 0), "right_hip": (-12, 0),
        "left_knee": (12, 48), "right_knee": (-12, 48),
        "left_ankle": (12, 95), "right_ankle": (-12, 95),
    }  # fmt: skip
    points = []
    for i in range(n):
        hx, hy = 120.0 + 12.0 * i, 300.0 + 2.0 * (i % 2)
        swing = 20.0 * math.sin(math.pi * i / 2.5)  # a gait cycle every 5 frames
        kps = []
        for name in COCO17:
            dx, dy = float(base[name][0]), float(base[name][1])
            side = 1 if name.startswith("left") else -1
            if name.endswith(("knee", "ankle")):
                dx += side * swing * dy / 95
            if name.endswith(("elbow", "wrist")):
                dx -= side * swing * 0.5 * (1 - dy / 95)
            kps.append(Keypoint(name, hx + dx, hy + dy, 0.9))
        xs, ys = [k.x for k in kps], [k.y for k in kps]
        box = (min(xs) - 10, min(ys) - 15, max(xs) + 10, max(ys) + 8)
        points.append(TrackPoint(i, Detection(box=box, score=0.9, keypoints=tuple(kps))))
    return Track(track_id=0, points=tuple(points), frame_size=(640, 480), fps=10.0)


def _shape_problems(what: str, shape: list[object], want_tail: list[int]) -> list[str]:
    """``shape`` must be [batch, *want_tail]; a symbolic (str/None) batch dim is expected."""
    if len(shape) != 1 + len(want_tail):
        return [f"{what} has rank {len(shape)} (shape {shape}), expected {1 + len(want_tail)}"]
    problems = []
    if isinstance(shape[0], int) and shape[0] != -1:
        problems.append(f"{what} batch dimension is fixed at {shape[0]}; it must be dynamic")
    for axis, (got, want) in enumerate(zip(shape[1:], want_tail, strict=True), start=1):
        if isinstance(got, int) and got != want:
            problems.append(f"{what} dim {axis} is {got}, manifest says {want}")
    return problems
