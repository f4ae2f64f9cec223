"""Train the reference action classifier (``action`` v1) on synthetic person tracks.

The tracks come from :mod:`model_registry.references.action_tracks` (four labels that differ
by how the body moves); features come from
:func:`deployments.models.action_features.track_features`, the function serving uses. The
network is a two-layer 1-D convolution over time (~5.4k parameters) with the feature
standardisation baked in, exported to ONNX with a dynamic batch axis.

Usage: ``python -m model_registry.references.action_training --out DIR [--seed N]``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deployments.models.action_features import FEATURE_NAMES, NUM_FEATURES, batch_features
from model_registry.manifest import InputSpec, Manifest
from model_registry.references.action_tracks import LABELS, generate_dataset

SEQ_LEN = 16
MODEL_FILE = "model.onnx"
INPUT_NAME = "sequence"
OUTPUT_NAME = "logits"
SCRIPT = "model_registry/references/action_training.py"
_REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class TrainConfig:
    """Data and optimiser sizes; the defaults are what ``action`` v1 is built with."""

    per_class: int = 1000  # generated tracks per label (train + held-out)
    test_fraction: float = 0.2
    no_pose_fraction: float = 0.25  # share of tracks in the YOLO-pose shape (no body_box)
    epochs: int = 25
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    width: int = 32  # conv channels
    seq_len: int = SEQ_LEN
    # 1 thread makes float reductions independent of the core count; the net is tiny anyway.
    num_threads: int = 1


@dataclass
class TrainResult:
    onnx_bytes: bytes
    metrics: dict[str, float]
    config: TrainConfig
    n_train: int
    n_test: int
    train_seconds: float
    timings: dict[str, float] = field(default_factory=dict)


# --- metrics -------------------------------------------------------------------------------


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str] = LABELS
) -> dict[str, float]:
    """accuracy, macro_f1 and f1_<label> (plain numpy: no sklearn in the platform)."""
    out = {"accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0}
    f1s = []
    for k, name in enumerate(labels):
        tp = float(np.sum((y_pred == k) & (y_true == k)))
        fp = float(np.sum((y_pred == k) & (y_true != k)))
        fn = float(np.sum((y_pred != k) & (y_true == k)))
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        out[f"f1_{name}"] = f1
        f1s.append(f1)
    out["macro_f1"] = float(np.mean(f1s))
    return {k: round(v, 6) for k, v in out.items()}


# --- model ---------------------------------------------------------------------------------


def build_net(
    mean: np.ndarray,
    std: np.ndarray,
    width: int,
    num_features: int = NUM_FEATURES,
    num_labels: int = len(LABELS),
    squash: float | None = None,
) -> Any:
    """The v1 network (v2 reuses it with its own feature and label counts).

    ``squash`` (v2): standardised inputs pass through ``squash * tanh(x / squash)`` and the pooled
    features through ``tanh``, so the logits are bounded by what the head learnt: a track far
    beyond the training data (or just further along an easy direction) cannot be extrapolated
    linearly into certainty; with label smoothing the easiest tracks get the confidence the
    training data supports. (Probabilities are never clipped.) v1 has none.
    """
    import torch
    from torch import nn

    class ActionNet(nn.Module):
        """[N, T, F] -> standardise -> 2 x Conv1d over T -> mean+max pool -> [N, C] logits."""

        def __init__(self) -> None:
            super().__init__()
            self.mean: torch.Tensor
            self.std: torch.Tensor
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
            self.conv1 = nn.Conv1d(num_features, width, kernel_size=3, padding=1)
            self.conv2 = nn.Conv1d(width, width, kernel_size=3, padding=2, dilation=2)
            self.head = nn.Linear(2 * width, num_labels)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = (x - self.mean) / self.std
            if squash is not None:
                x = squash * torch.tanh(x / squash)
            x = x.transpose(1, 2)
            x = torch.relu(self.conv1(x))
            x = torch.relu(self.conv2(x))
            pooled = torch.cat([x.mean(dim=2), torch.amax(x, dim=2)], dim=1)
            if squash is not None:
                pooled = torch.tanh(pooled)
            return self.head(pooled)

    return ActionNet()


def export_onnx(
    net: Any,
    seq_len: int,
    labels: Sequence[str] = LABELS,
    features: Sequence[str] = FEATURE_NAMES,
) -> bytes:
    """ONNX bytes of ``net`` with a dynamic batch axis, labels/features stamped as metadata."""
    import onnx
    import torch

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # The TorchScript exporter is deprecated in torch 2.13, but the dynamo one needs
        # onnxscript, which the platform does not install.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(1, seq_len, len(features)),),
            Path(tmp) / MODEL_FILE,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
        model = onnx.load(Path(tmp) / MODEL_FILE)
    # The manifest is the source of truth; these let check_io catch a manifest swapped in from
    # another model with the same shapes.
    meta = {
        "labels": json.dumps(list(labels)),
        "features": json.dumps(list(features)),
        "seq_len": str(seq_len),
    }
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    return model.SerializeToString()


def onnx_logits(onnx_bytes: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    return np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: x})[0])


@contextmanager
def torch_settings(num_threads: int) -> Iterator[None]:
    """Deterministic torch on ``num_threads`` threads, the caller's settings restored after."""
    import torch

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(num_threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def fit_net(
    x_train: np.ndarray,
    y_train: np.ndarray,
    seed: int,
    cfg: TrainConfig,
    *,
    num_labels: int,
    label_smoothing: float = 0.0,
    squash: float | None = None,
) -> Any:
    """Train :func:`build_net` (standardisation from ``x_train``) with AdamW + one-cycle LR;
    returns it in eval mode. Call inside :func:`torch_settings`."""
    import torch

    torch.manual_seed(seed)
    num_features = x_train.shape[-1]
    mean = x_train.reshape(-1, num_features).mean(axis=0)
    std = np.maximum(x_train.reshape(-1, num_features).std(axis=0), 1e-3)
    net = build_net(mean, std, cfg.width, num_features, num_labels, squash)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch
    )
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train.astype(np.int64))
    order_rng = np.random.default_rng(seed + 1)
    net.train()
    for _ in range(cfg.epochs):
        order = torch.from_numpy(order_rng.permutation(len(x_train)))
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            loss = torch.nn.functional.cross_entropy(
                net(xt[idx]), yt[idx], label_smoothing=label_smoothing
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    return net


def checked_onnx_logits(onnx_bytes: bytes, x: np.ndarray, torch_logits: np.ndarray) -> np.ndarray:
    """The exported artifact's logits on ``x``, which must agree with the torch model's."""
    logits = onnx_logits(onnx_bytes, x)
    if not np.allclose(logits, torch_logits, atol=1e-3, rtol=1e-3):
        worst = float(np.abs(logits - torch_logits).max())
        raise RuntimeError(f"ONNX export disagrees with the torch model (max |diff| {worst})")
    return logits


def train(seed: int = 0, config: TrainConfig | None = None) -> TrainResult:
    """Generate data, train, evaluate on the held-out split, export. Deterministic per seed."""
    import torch

    cfg = config or TrainConfig()
    started = time.perf_counter()
    tracks, y = generate_dataset(seed, cfg.per_class, cfg.no_pose_fraction)
    x = batch_features(tracks, cfg.seq_len)
    has_pose = x[:, 0, FEATURE_NAMES.index("has_pose")] > 0.5
    n_test = round(len(tracks) * cfg.test_fraction)
    x_train, y_train, x_test, y_test = x[n_test:], y[n_test:], x[:n_test], y[:n_test]
    data_seconds = time.perf_counter() - started

    with torch_settings(cfg.num_threads):
        net = fit_net(x_train, y_train, seed, cfg, num_labels=len(LABELS))
        with torch.no_grad():
            torch_logits = net(torch.from_numpy(x_test)).numpy()
        fit_seconds = time.perf_counter() - started - data_seconds
        onnx_bytes = export_onnx(net, cfg.seq_len)

    # Metrics are those of the exported artifact, which must agree with the torch model.
    logits = checked_onnx_logits(onnx_bytes, x_test, torch_logits)
    pred = logits.argmax(axis=1)
    metrics = classification_metrics(y_test, pred)
    no_pose = ~has_pose[:n_test]
    if no_pose.any():
        metrics["accuracy_no_pose"] = round(float(np.mean(pred[no_pose] == y_test[no_pose])), 6)
    return TrainResult(
        onnx_bytes=onnx_bytes,
        metrics=metrics,
        config=cfg,
        n_train=len(x_train),
        n_test=n_test,
        train_seconds=time.perf_counter() - started,
        timings={"data_s": data_seconds, "fit_s": fit_seconds},
    )


# --- model directory -----------------------------------------------------------------------


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=_REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "uncommitted"
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else "uncommitted"


def write_model_dir(out_dir: Path, result: TrainResult, seed: int) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MODEL_FILE).write_bytes(result.onnx_bytes)
    cfg = result.config
    manifest = Manifest(
        name="action",
        task="action",
        artifacts={"model": MODEL_FILE},
        input=InputSpec(width=cfg.seq_len, height=NUM_FEATURES, channels=1, layout="NTF"),
        labels=list(LABELS),
        preprocess={"seq_len": cfg.seq_len, "features": list(FEATURE_NAMES)},
        postprocess={"activation": "softmax"},
        runtimes=["cpu"],
        description=(
            "Action of a tracked person (walking/standing/reaching/crouching) from its "
            "detections over time; 1-D conv over scale- and position-invariant track "
            "features, trained on synthetic BlazePose/YOLO-shaped tracks."
        ),
        source={
            "script": SCRIPT,
            "git_commit": git_commit(),
            "seed": str(seed),
            "data": (
                f"synthetic: {cfg.per_class} tracks/label, {result.n_train} train / "
                f"{result.n_test} held-out, {cfg.epochs} epochs"
            ),
        },
        metrics=result.metrics,
    )
    manifest.dump(out_dir)
    return out_dir


def build_action_v1(out_dir: Path, seed: int = 0, config: TrainConfig | None = None) -> Path:
    """Train and write a complete model directory (model.onnx + manifest.yaml)."""
    return write_model_dir(out_dir, train(seed, config), seed)


def run_cli(
    argv: list[str] | None,
    prog: str,
    doc: str,
    config: type[TrainConfig],
    train_fn: Callable[[int, Any], TrainResult],
    write_fn: Callable[[Path, TrainResult, int], Path],
    split: str,
) -> int:
    """The training command line both action versions share: train, write, print metrics."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class", type=int, default=config.per_class)
    parser.add_argument("--epochs", type=int, default=config.epochs)
    args = parser.parse_args(argv)
    result = train_fn(args.seed, config(per_class=args.per_class, epochs=args.epochs))
    write_fn(args.out, result, args.seed)
    print(
        f"wrote {args.out / MODEL_FILE} ({len(result.onnx_bytes)} bytes) in "
        f"{result.train_seconds:.1f}s (data {result.timings['data_s']:.1f}s, "
        f"fit {result.timings['fit_s']:.1f}s); {result.n_train} train / {result.n_test} {split}"
    )
    for key, value in result.metrics.items():
        print(f"  {key:18s} {value:.4f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(
        argv, "python -m model_registry.references.action_training", __doc__ or "",
        TrainConfig, train, write_model_dir, "held-out",
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
