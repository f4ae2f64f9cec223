"""Train ``action`` v2: five labels from the 17 COCO keypoints, with a fitted temperature.

Data: :mod:`model_registry.references.skeleton_tracks` (articulated 3-D skeletons filmed by a
random camera, YOLO-pose-shaped detections; a share box-only). Features:
:mod:`deployments.models.action_features_coco`. Network, training loop, ONNX export and metrics
are v1's (:mod:`model_registry.references.action_training`), with label smoothing.

Seed ``s``'s tracks are split test / calibration / train (in that order). After training, one
temperature ``T`` is fitted by minimising the NLL on the calibration split
(:func:`model_registry.references.calibration.fit_temperature`); the manifest records it as
``postprocess.temperature`` (serving divides the logits by it), and its metrics hold the test
split's accuracy / F1s, top-label ECE (15 bins) before and after scaling, and ``ece_hard``: the
ECE after scaling on a separate seed drawn with doubled noise and camera pitches/rolls that
training never saw (:data:`model_registry.references.skeleton_motion.HARD`).

Usage: ``python -m model_registry.references.action_training_v2 --out DIR [--seed N]``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deployments.models.action_features_coco import (
    FEATURE_NAMES,
    NUM_FEATURES,
    batch_features,
    mirrored,
    reversed_in_time,
)
from model_registry.manifest import InputSpec, Manifest
from model_registry.references.action_training import (
    MODEL_FILE,
    TrainConfig,
    TrainResult,
    checked_onnx_logits,
    classification_metrics,
    export_onnx,
    fit_net,
    git_commit,
    onnx_logits,
    run_cli,
    torch_settings,
)
from model_registry.references.calibration import (
    confidence_summary,
    expected_calibration_error,
    fit_temperature,
    softmax,
)
from model_registry.references.skeleton_motion import HARD, LABELS
from model_registry.references.skeleton_tracks import generate_dataset, noisy_labels

SCRIPT = "model_registry/references/action_training_v2.py"
KEYPOINT_LAYOUT = "coco17"
HARD_SEED_OFFSET = 7919  # the hard set's seed is seed + this
SHIFT_SEED_OFFSET = 104729  # the shifted calibration tracks' seed (never the hard set's)


@dataclass(frozen=True)
class TrainConfigV2(TrainConfig):
    """v1's optimiser settings plus the calibration split, the hard set and label smoothing."""

    per_class: int = 700
    test_fraction: float = 0.2
    calib_fraction: float = 0.2
    hard_per_class: int = 160
    # Real cameras are not the generator: the temperature is fitted on the calibration split
    # plus tracks generated under the hard set's shift (another seed), so that confidences
    # stay honest a little outside the training distribution too.
    shift_calib_per_class: int = 140
    label_smoothing: float = 0.2
    squash: float = 3.0  # bounded network, see build_net
    label_noise: float = 0.03  # share of labels replaced by another (see noisy_labels)
    augment: bool = True  # train on mirrored and time-reversed copies too (4x the tracks)
    epochs: int = 12


def _split(n: int, cfg: TrainConfigV2) -> tuple[slice, slice, slice]:
    n_test, n_cal = round(n * cfg.test_fraction), round(n * cfg.calib_fraction)
    return slice(0, n_test), slice(n_test, n_test + n_cal), slice(n_test + n_cal, n)


def train_v2(seed: int = 0, config: TrainConfigV2 | None = None) -> TrainResult:
    """Generate, train, calibrate, evaluate, export. Deterministic per seed."""
    import torch

    cfg = config or TrainConfigV2()
    started = time.perf_counter()
    tracks, y_clean = generate_dataset(seed, cfg.per_class, cfg.no_pose_fraction)
    y = noisy_labels(y_clean, cfg.label_noise, seed)
    x = batch_features(tracks, cfg.seq_len)
    hard_seed = seed + HARD_SEED_OFFSET
    hard_tracks, y_hard_clean = generate_dataset(
        hard_seed, cfg.hard_per_class, cfg.no_pose_fraction, HARD
    )
    y_hard = noisy_labels(y_hard_clean, cfg.label_noise, hard_seed)
    x_hard = batch_features(hard_tracks, cfg.seq_len)
    test, cal, tr = _split(len(tracks), cfg)
    shift_seed = seed + SHIFT_SEED_OFFSET
    shift_tracks, y_shift_clean = generate_dataset(
        shift_seed, cfg.shift_calib_per_class, cfg.no_pose_fraction, HARD
    )
    y_shift = noisy_labels(y_shift_clean, cfg.label_noise, shift_seed)
    x_cal = np.concatenate([x[cal], batch_features(shift_tracks, cfg.seq_len)])
    y_cal = np.concatenate([y[cal], y_shift])
    data_seconds = time.perf_counter() - started

    x_train, y_train = x[tr], y[tr]
    if cfg.augment:
        x_train = np.concatenate([x_train, mirrored(x_train)])
        x_train = np.concatenate([x_train, reversed_in_time(x_train)])
        y_train = np.tile(y_train, 4)
    with torch_settings(cfg.num_threads):
        net = fit_net(
            x_train,
            y_train,
            seed,
            cfg,
            num_labels=len(LABELS),
            label_smoothing=cfg.label_smoothing,
            squash=cfg.squash,
        )
        with torch.no_grad():
            torch_logits = net(torch.from_numpy(x[test])).numpy()
        fit_seconds = time.perf_counter() - started - data_seconds
        onnx_bytes = export_onnx(net, cfg.seq_len, LABELS, FEATURE_NAMES)

    # Everything below is measured on the exported artifact.
    logits = checked_onnx_logits(onnx_bytes, x[test], torch_logits)
    temperature = fit_temperature(onnx_logits(onnx_bytes, x_cal), y_cal)
    probs = softmax(logits, temperature)
    hard_probs = softmax(onnx_logits(onnx_bytes, x_hard), temperature)
    y_test, pred = y[test], logits.argmax(axis=1)
    metrics = classification_metrics(y_test, pred, LABELS)
    no_pose = x[test][:, 0, FEATURE_NAMES.index("has_pose")] < 0.5
    if no_pose.any():
        metrics["accuracy_no_pose"] = float(np.mean(pred[no_pose] == y_test[no_pose]))
    metrics["temperature"] = temperature
    metrics["ece_before"] = expected_calibration_error(softmax(logits), y_test)
    metrics["ece_after"] = expected_calibration_error(probs, y_test)
    metrics["ece_hard"] = expected_calibration_error(hard_probs, y_hard)
    metrics["accuracy_hard"] = float(np.mean(hard_probs.argmax(axis=1) == y_hard))
    # Against the motions actually generated (before label noise).
    metrics["accuracy_clean"] = float(np.mean(pred == y_clean[test]))
    metrics["ece_after_clean"] = expected_calibration_error(probs, y_clean[test])
    metrics.update(confidence_summary(probs))
    metrics["conf_max_hard"] = float(hard_probs.max())
    return TrainResult(
        onnx_bytes=onnx_bytes,
        metrics={k: round(float(v), 6) for k, v in metrics.items()},
        config=cfg,
        n_train=tr.stop - tr.start,
        n_test=test.stop,
        train_seconds=time.perf_counter() - started,
        timings={"data_s": data_seconds, "fit_s": fit_seconds, "n_calib": len(y_cal)},
    )


def write_model_dir_v2(out_dir: Path, result: TrainResult, seed: int) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MODEL_FILE).write_bytes(result.onnx_bytes)
    cfg = result.config
    assert isinstance(cfg, TrainConfigV2)
    n_cal = int(result.timings["n_calib"])
    manifest = Manifest(
        name="action",
        task="action",
        artifacts={"model": MODEL_FILE},
        input=InputSpec(width=cfg.seq_len, height=NUM_FEATURES, channels=1, layout="NTF"),
        labels=list(LABELS),
        preprocess={
            "seq_len": cfg.seq_len,
            "features": list(FEATURE_NAMES),
            "keypoint_layout": KEYPOINT_LAYOUT,
        },
        postprocess={"activation": "softmax", "temperature": result.metrics["temperature"]},
        runtimes=["cpu"],
        description=(
            "Action of a tracked person (walking/standing/reaching/crouching/other) from its 17 "
            "COCO keypoints and box over time (box-only fallback); 1-D conv over scale- and "
            "position-invariant features, trained on articulated 3-D skeleton motions filmed "
            "by random cameras; temperature-scaled (calibrated) softmax."
        ),
        source={
            "script": SCRIPT,
            "git_commit": git_commit(),
            "seed": str(seed),
            "data": (
                f"synthetic skeletons: {cfg.per_class} tracks/label, {result.n_train} train / "
                f"{n_cal} calibration / {result.n_test} test, {cfg.epochs} epochs"
                f"{' on mirrored + time-reversed copies too' if cfg.augment else ''}, label "
                f"smoothing {cfg.label_smoothing}, label noise {cfg.label_noise}; hard set: "
                f"seed {seed + HARD_SEED_OFFSET}, "
                f"{cfg.hard_per_class} tracks/label, noise x{HARD.noise:g}, camera pitch "
                f"{HARD.pitch_deg[0]:g}-{HARD.pitch_deg[1]:g} deg, roll <= {HARD.roll_deg:g} deg"
            ),
        },
        metrics=result.metrics,
    )
    manifest.dump(out_dir)
    return out_dir


def build_action_v2(out_dir: Path, seed: int = 0, config: TrainConfigV2 | None = None) -> Path:
    """Train, calibrate and write a complete model directory (model.onnx + manifest.yaml)."""
    return write_model_dir_v2(out_dir, train_v2(seed, config), seed)


def main(argv: list[str] | None = None) -> int:
    return run_cli(
        argv, "python -m model_registry.references.action_training_v2", __doc__ or "",
        TrainConfigV2, train_v2, write_model_dir_v2, "test",
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
