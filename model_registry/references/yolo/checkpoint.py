"""Read an Ultralytics ``.pt`` checkpoint without ultralytics, and without running its pickle.

An Ultralytics checkpoint is a ``torch.save`` zip whose ``data.pkl`` pickles the whole
``PoseModel`` object graph: ultralytics classes (``Conv``, ``C3k2``, ``Pose``...) around real
``torch.nn`` children that hold the weights. Unpickling that normally imports ultralytics (AGPL,
pulls torchvision) and, like any pickle, can call any importable function. We need neither:
the weights and the layer table are data. So:

1. the file's sha256 is checked against a pinned value *before* a byte is unpickled;
2. the zip must look like a plain ``torch.save`` archive: one ``data.pkl``, no TorchScript
   (``torch.load`` silently hands archives with ``constants.pkl`` to ``torch.jit.load``);
3. every global the pickle names is checked *statically* (``pickletools``) against an
   allow-list, so a refused global aborts before any object is built;
4. the unpickler's ``find_class`` enforces the same list at load time: ``ultralytics.*``
   classes become inert placeholder ``nn.Module`` subclasses, ``getattr`` is replaced by a
   version that only names attributes of placeholders (the checkpoint stores
   ``Pose.detect = getattr(Detect, "forward")``; a real ``getattr`` on an allowed class reaches
   ``__globals__`` and from there ``eval``), anything else raises.

The result is plain data: the yaml layer table, the flat tensors (name -> tensor, walked from
the placeholders' ``_parameters``/``_buffers`` without calling any module hook) and metadata.
"""

from __future__ import annotations

import collections
import hashlib
import io
import pickle
import pickletools
import re
import types
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from serving.errors import ArtifactIntegrityError, ModelValidationError

# Globals other than ``ultralytics.*`` that a torch.save'd Ultralytics model needs (protocol 2
# writes ``__builtin__``; protocol 3+ ``builtins``). Storage types are resolved by torch itself
# before find_class sees them, but the static scan checks them too.
_NN = "torch.nn.modules."
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch", "Size"),
        ("torch", "FloatStorage"),
        ("torch", "HalfStorage"),
        ("torch", "LongStorage"),
        ("collections", "OrderedDict"),
        ("__builtin__", "set"),
        ("builtins", "set"),
        ("__builtin__", "getattr"),  # replaced by _placeholder_getattr
        ("builtins", "getattr"),
        (_NN + "activation", "SiLU"),
        (_NN + "batchnorm", "BatchNorm2d"),
        (_NN + "container", "ModuleList"),
        (_NN + "container", "Sequential"),
        (_NN + "conv", "Conv2d"),
        (_NN + "linear", "Identity"),
        (_NN + "pooling", "MaxPool2d"),
        (_NN + "upsampling", "Upsample"),
    }
)
_ULTRALYTICS = "ultralytics."


class UnsafeCheckpoint(ModelValidationError):
    """The checkpoint names a global that is not on the allow-list, or is not a torch zip."""

    code = "unsafe_checkpoint"


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint holds, as data."""

    layers: dict[str, Any]  # the model's yaml: scales, scale, backbone, head, kpt_shape...
    tensors: dict[str, torch.Tensor]  # "model.0.conv.weight" -> tensor (dtype as stored)
    metadata: dict[str, Any] = field(default_factory=dict)


class Placeholder(torch.nn.Module):
    """Base of the stand-ins for ultralytics classes: state only, no forward, no code."""

    ultralytics_name = "ultralytics"


_PLACEHOLDERS: dict[tuple[str, str], type[Placeholder]] = {}


def placeholder_class(module: str, name: str) -> type[Placeholder]:
    """One placeholder class per ultralytics global (so type names survive for the report)."""
    key = (module, name)
    if key not in _PLACEHOLDERS:
        if not name.isidentifier():
            raise UnsafeCheckpoint(f"checkpoint names an odd global {module}.{name!r}")
        _PLACEHOLDERS[key] = type(
            name, (Placeholder,), {"__module__": __name__, "ultralytics_name": f"{module}.{name}"}
        )
    return _PLACEHOLDERS[key]


def _placeholder_getattr(obj: Any, name: str) -> str:
    """``getattr`` as the pickle may use it: a public attribute of a placeholder class only.

    Returns the dotted name instead of the attribute (there is no ultralytics code to return).
    """
    if not (isinstance(obj, type) and issubclass(obj, Placeholder)):
        raise UnsafeCheckpoint(f"checkpoint calls getattr on {type(obj).__name__}, refused")
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise UnsafeCheckpoint(f"checkpoint calls getattr(..., {name!r}), refused")
    return f"{obj.ultralytics_name}.{name}"


def _allowed(module: str, name: str) -> bool:
    return module.startswith(_ULTRALYTICS) or (module, name) in ALLOWED_GLOBALS


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only allow-listed globals (see module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith(_ULTRALYTICS):
            return placeholder_class(module, name)
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafeCheckpoint(
                f"checkpoint refers to {module}.{name}, which is not on the allow-list",
                global_name=f"{module}.{name}",
            )
        if name == "getattr":
            return _placeholder_getattr
        return super().find_class(module, name)


def _restricted_load(file: Any, **kwargs: Any) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


def _restricted_loads(data: bytes, **kwargs: Any) -> Any:
    return RestrictedUnpickler(io.BytesIO(data), **kwargs).load()


# What torch.load gets as ``pickle_module``: it subclasses ``.Unpickler`` (zip format), calls
# ``.load`` (legacy format, refused earlier anyway) and reads ``.__name__`` (a dill check).
restricted_pickle = types.ModuleType("restricted_pickle")
restricted_pickle.Unpickler = RestrictedUnpickler  # type: ignore[attr-defined]
restricted_pickle.load = _restricted_load  # type: ignore[attr-defined]
restricted_pickle.loads = _restricted_loads  # type: ignore[attr-defined]


# Only these push a str for certain; BINSTRING & co. depend on the unpickler's encoding.
_STR_OPS = frozenset({"UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"})


def pickle_globals(data: bytes) -> list[tuple[str, str]]:
    """Every global a pickle stream names, without running it.

    ``GLOBAL``/``INST`` carry the name in the opcode; ``STACK_GLOBAL`` takes the two strings on
    top of the stack, which we track through string pushes and the memo. A ``STACK_GLOBAL``
    whose operands cannot be resolved that way is reported as ``("?", "?")`` (refused), and so
    is the extension registry (``EXT*`` opcodes).
    """
    found: list[tuple[str, str]] = []
    stack: list[str | None] = []  # the top of the real stack, as long as only strings were pushed
    memo: dict[int, str | None] = {}
    for op, arg, _ in pickletools.genops(data):
        name = op.name
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            found.append((module, attr))
            stack = []
        elif name == "STACK_GLOBAL":
            module_s, attr_s = (stack[-2], stack[-1]) if len(stack) >= 2 else (None, None)
            found.append((module_s, attr_s) if module_s and attr_s else ("?", "?"))
            stack = []
        elif name in _STR_OPS:
            stack.append(arg if isinstance(arg, str) else None)
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg if isinstance(arg, int) else -1] = stack[-1] if stack else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(arg) if isinstance(arg, int) else None)
        elif name.startswith("EXT"):
            found.append(("?", f"extension {arg}"))
            stack = []
        elif name not in ("FRAME", "PROTO"):
            stack = []
    return found


def _check_archive(path: Path, raw: bytes) -> None:
    """Refuses anything but a plain torch.save zip whose pickle names only allowed globals."""
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        raise UnsafeCheckpoint(f"{path.name} is not a torch.save zip archive (legacy format?)")
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        names = zf.namelist()
        pickles = [n for n in names if n.endswith(".pkl")]
        if len(pickles) != 1 or not pickles[0].endswith("/data.pkl"):
            raise UnsafeCheckpoint(
                f"{path.name} must hold exactly one data.pkl (no TorchScript), has {pickles}"
            )
        if any("/code/" in n for n in names):
            raise UnsafeCheckpoint(f"{path.name} holds TorchScript code, refused")
        data = zf.read(pickles[0])
    refused = sorted({f"{m}.{n}" for m, n in pickle_globals(data) if not _allowed(m, n)})
    if refused:
        raise UnsafeCheckpoint(
            f"{path.name} refers to globals not on the allow-list: {', '.join(refused)}",
            refused=refused,
        )


def load_checkpoint(path: Path, expected_sha256: str) -> Checkpoint:
    """Verify, scan and load an Ultralytics checkpoint (see the module docstring)."""
    path = Path(path)
    raw = path.read_bytes()  # hashed, scanned and loaded from the same bytes (no TOCTOU)
    actual = hashlib.sha256(raw).hexdigest()
    if actual != expected_sha256:
        raise ArtifactIntegrityError(
            f"{path.name} has sha256 {actual}, expected {expected_sha256}; not loading it",
            expected=expected_sha256,
            actual=actual,
        )
    _check_archive(path, raw)
    ckpt = torch.load(
        io.BytesIO(raw), map_location="cpu", pickle_module=restricted_pickle, weights_only=False
    )
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), Placeholder):
        raise UnsafeCheckpoint(f"{path.name} is not an Ultralytics checkpoint (no 'model')")
    model = ckpt["model"]
    layers = getattr(model, "yaml", None)
    if not isinstance(layers, dict) or "backbone" not in layers or "head" not in layers:
        raise UnsafeCheckpoint(f"{path.name}: the model has no yaml layer table")
    return Checkpoint(layers=layers, tensors=flat_tensors(model), metadata=_metadata(ckpt))


def flat_tensors(module: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """Persistent parameters and buffers by dotted name, in module order (no hooks run)."""
    out: dict[str, torch.Tensor] = {}
    skip: set[str] = getattr(module, "_non_persistent_buffers_set", set())
    for key, value in getattr(module, "_parameters", {}).items():
        if value is not None:
            out[prefix + key] = value.detach()
    for key, value in getattr(module, "_buffers", {}).items():
        if value is not None and key not in skip:
            out[prefix + key] = value.detach()
    for key, child in getattr(module, "_modules", {}).items():
        if child is not None:
            out |= flat_tensors(child, f"{prefix}{key}.")
    return out


_RUNTIME_ONLY = re.compile(r", momentum=[0-9.e-]+|inplace=True")


def describe_leaves(module: torch.nn.Module) -> dict[str, str]:
    """Leaf modules by dotted name -> their repr (kernel, stride, groups, eps, activation...).

    Training-only settings (BatchNorm momentum, in-place activations) are dropped. Ultralytics
    shares one ``SiLU`` between all convs; shared modules are listed under every name.
    """
    return {
        name: _RUNTIME_ONLY.sub("", repr(child))
        for name, child in module.named_modules(remove_duplicate=False)
        if name and not any(True for _ in child.children())
    }


def _metadata(ckpt: dict[str, Any]) -> dict[str, Any]:
    model = ckpt["model"]
    args = getattr(model, "args", {}) or {}
    train_args = ckpt.get("train_args") or {}
    eps = sorted({float(m.eps) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)})
    stride = getattr(model, "stride", None)
    return {
        "names": dict(getattr(model, "names", {}) or {}),
        "kpt_shape": list(getattr(model, "kpt_shape", None) or model.yaml.get("kpt_shape")),
        "license": str(ckpt.get("license", "")),
        "imgsz": int(args.get("imgsz") or train_args.get("imgsz") or 640),
        "stride": [float(s) for s in stride] if stride is not None else [],
        "task": str(getattr(model, "task", args.get("task", ""))),
        "ultralytics_version": str(ckpt.get("version", "")),
        "date": str(ckpt.get("date", "")),
        "bn_eps": eps,
        "leaf_modules": describe_leaves(model),
        "classes": dict(
            sorted(
                collections.Counter(
                    type(m).__name__ for m in model.modules() if isinstance(m, Placeholder)
                ).items()
            )
        ),
    }
