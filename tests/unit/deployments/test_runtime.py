"""Provider choice and session creation, with the hardware probe and ORT's provider list patched.

``choose_provider`` is a pure decision over three inputs: the CUDA device probe
(``cuda_device_present``), the providers ORT offers (``available`` or
``onnxruntime.get_available_providers``) and the GPU ids Ray assigned (``CUDA_VISIBLE_DEVICES``).
``create_session`` builds a real session on a tiny ONNX model; on this CPU-only ORT a GPU provider
can never start, which is exactly the silent fallback its info must report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from deployments import runtime
from deployments.runtime import RuntimeInfo, RuntimeSpec, choose_provider, create_session

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TRT = "TensorrtExecutionProvider"
ALL = [TRT, CUDA, CPU]


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``gpus(ids, present)``: Ray assigned ``ids`` (None = unset); a CUDA device exists or not."""

    def set_(ids: str | None, present: bool) -> None:
        if ids is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ids)
        monkeypatch.setattr(runtime, "cuda_device_present", lambda: present)

    return set_


# --- assigned_gpu_ids -----------------------------------------------------------------------


def test_assigned_gpu_ids_are_the_cuda_visible_devices_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert runtime.assigned_gpu_ids() == ("3", "1")


@pytest.mark.parametrize("value", [None, ""])
def test_no_assigned_gpu_ids_when_cuda_visible_devices_is_unset_or_empty(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert runtime.assigned_gpu_ids() == ()


# --- choose_provider: CPU without trying ----------------------------------------------------


def test_device_cpu_runs_on_cpu_even_with_an_assigned_real_gpu_and_cuda_provider(gpus: Any) -> None:
    gpus("0", present=True)
    info = choose_provider(RuntimeSpec(device="cpu"), ["tensorrt", "cuda", "cpu"], ALL)
    assert info == RuntimeInfo(CPU, "cpu", "cpu", None, ("0",))


def test_auto_without_an_assigned_gpu_runs_on_cpu_with_no_fallback_reason(gpus: Any) -> None:
    gpus(None, present=True)  # a device on the node is not this replica's GPU
    info = choose_provider(RuntimeSpec(device="auto"), ["cuda", "cpu"], ALL)
    assert info == RuntimeInfo(CPU, "cpu", "cpu", None, ())


def test_auto_with_empty_cuda_visible_devices_is_not_a_gpu_request(gpus: Any) -> None:
    gpus("", present=True)
    info = choose_provider(RuntimeSpec(), ["cuda", "cpu"], ALL)
    assert (info.provider, info.requested, info.fallback_reason) == (CPU, "cpu", None)


# --- choose_provider: a GPU is wanted but there is no device --------------------------------


def test_auto_with_logical_gpu_ids_but_no_device_falls_back_to_cpu_naming_the_ids(
    gpus: Any,
) -> None:
    gpus("1", present=False)
    info = choose_provider(RuntimeSpec(device="auto"), ["cuda", "cpu"], ALL)
    assert (info.provider, info.device, info.requested, info.gpu_ids) == (
        CPU,
        "cpu",
        "cuda",
        ("1",),
    )
    assert info.fallback_reason is not None
    assert "no CUDA device" in info.fallback_reason
    assert "['1']" in info.fallback_reason


def test_explicit_cuda_without_ids_or_device_falls_back_to_cpu(gpus: Any) -> None:
    gpus(None, present=False)
    info = choose_provider(RuntimeSpec(device="cuda"), ["cuda", "cpu"], ALL)
    assert (info.provider, info.device, info.requested, info.gpu_ids) == (CPU, "cpu", "cuda", ())
    assert info.fallback_reason is not None
    assert "no CUDA device" in info.fallback_reason
    assert "[]" in info.fallback_reason


# --- choose_provider: device present --------------------------------------------------------


def test_auto_with_device_and_cuda_provider_runs_on_the_first_assigned_gpu(gpus: Any) -> None:
    gpus("1", present=True)
    info = choose_provider(RuntimeSpec(device="auto"), ["cuda", "cpu"], [CUDA, CPU])
    assert info == RuntimeInfo(CUDA, "cuda:1", "cuda", None, ("1",))


def test_several_assigned_gpus_use_the_first_and_pass_all_ids_through(gpus: Any) -> None:
    gpus("2,3", present=True)
    info = choose_provider(RuntimeSpec(device="auto"), ["cuda", "cpu"], [CUDA, CPU])
    assert info == RuntimeInfo(CUDA, "cuda:2", "cuda", None, ("2", "3"))


def test_explicit_cuda_without_assigned_ids_uses_cuda_0(gpus: Any) -> None:
    gpus(None, present=True)
    info = choose_provider(RuntimeSpec(device="cuda"), ["cuda", "cpu"], [CUDA, CPU])
    assert info == RuntimeInfo(CUDA, "cuda:0", "cuda", None, ())


def test_preferred_order_picks_tensorrt_first_when_available(gpus: Any) -> None:
    gpus("0", present=True)
    info = choose_provider(RuntimeSpec(), ["tensorrt", "cuda", "cpu"], ALL)
    assert info == RuntimeInfo(TRT, "cuda:0", "cuda", None, ("0",))


def test_preferred_order_picks_cuda_when_tensorrt_is_not_available(gpus: Any) -> None:
    gpus("0", present=True)
    info = choose_provider(RuntimeSpec(), ["tensorrt", "cuda", "cpu"], [CUDA, CPU])
    assert info == RuntimeInfo(CUDA, "cuda:0", "cuda", None, ("0",))


def test_preferred_order_is_the_manifests_not_a_fixed_ranking(gpus: Any) -> None:
    gpus("0", present=True)
    info = choose_provider(RuntimeSpec(), ["cuda", "tensorrt", "cpu"], ALL)
    assert info.provider == CUDA


def test_device_without_a_gpu_provider_in_ort_falls_back_naming_the_available_list(
    gpus: Any,
) -> None:
    gpus("0", present=True)
    available = ["AzureExecutionProvider", CPU]
    info = choose_provider(RuntimeSpec(), ["tensorrt", "cuda", "cpu"], available)
    assert (info.provider, info.device, info.requested, info.gpu_ids) == (
        CPU,
        "cpu",
        "cuda",
        ("0",),
    )
    assert info.fallback_reason is not None
    assert "no GPU execution provider" in info.fallback_reason
    assert str(available) in info.fallback_reason


def test_cpu_in_preferred_never_selects_a_gpu_provider(gpus: Any) -> None:
    gpus("0", present=True)
    info = choose_provider(RuntimeSpec(device="cuda"), ["cpu"], ALL)
    assert (info.provider, info.device, info.requested, info.gpu_ids) == (
        CPU,
        "cpu",
        "cuda",
        ("0",),
    )
    # The reason names the model's runtimes: ORT has GPU providers, the model allows none.
    assert "for the model's runtimes ['cpu']" in (info.fallback_reason or "")


def test_unknown_runtime_names_in_preferred_are_skipped(gpus: Any) -> None:
    gpus("0", present=True)
    info = choose_provider(RuntimeSpec(), ["openvino", "cuda"], ALL)
    assert info.provider == CUDA


# --- choose_provider: available=None asks onnxruntime ---------------------------------------


def test_available_defaults_to_onnxruntime_providers_with_cuda(
    gpus: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpus("0", present=True)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, CPU])
    info = choose_provider(RuntimeSpec(), ["tensorrt", "cuda", "cpu"])
    assert info == RuntimeInfo(CUDA, "cuda:0", "cuda", None, ("0",))


def test_available_defaults_to_onnxruntime_providers_without_gpu(
    gpus: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpus("0", present=True)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CPU])
    info = choose_provider(RuntimeSpec(), ["tensorrt", "cuda", "cpu"])
    assert (info.provider, info.device, info.requested) == (CPU, "cpu", "cuda")
    assert info.fallback_reason is not None
    assert "no GPU execution provider" in info.fallback_reason
    assert "['CPUExecutionProvider']" in info.fallback_reason


def test_runtime_info_to_dict_lists_gpu_ids() -> None:
    info = RuntimeInfo(CUDA, "cuda:1", "cuda", None, ("1", "2"))
    assert info.to_dict() == {
        "provider": CUDA,
        "device": "cuda:1",
        "requested": "cuda",
        "fallback_reason": None,
        "gpu_ids": ["1", "2"],
    }


# --- create_session -------------------------------------------------------------------------


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    """y = x + 1 on float[1, 2]: enough for a real ORT session."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "g", [x], [y], [one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by every ORT this project allows
    onnx.checker.check_model(model)
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    return path


def _run(session: Any) -> list[list[float]]:
    import numpy as np

    (out,) = session.run(None, {"x": np.array([[1.0, 2.0]], dtype=np.float32)})
    return [[float(v) for v in row] for row in out.tolist()]


def _choose(monkeypatch: pytest.MonkeyPatch, info: RuntimeInfo) -> None:
    monkeypatch.setattr(runtime, "choose_provider", lambda spec, preferred, available=None: info)


def test_create_session_on_cpu_keeps_the_chosen_info_and_applies_thread_options(
    tiny_model: Path, gpus: Any
) -> None:
    gpus(None, present=False)
    spec = RuntimeSpec(device="cpu", intra_op_num_threads=2, inter_op_num_threads=1)
    session, info = create_session(tiny_model, spec, ["cpu"])
    assert info == RuntimeInfo(CPU, "cpu", "cpu", None, ())
    assert session.get_providers() == [CPU]
    assert session.get_session_options().intra_op_num_threads == 2
    assert _run(session) == [[2.0, 3.0]]


def _spin(session: Any) -> tuple[str, str]:
    opts = session.get_session_options()
    return (
        opts.get_session_config_entry("session.intra_op.allow_spinning"),
        opts.get_session_config_entry("session.force_spinning_stop"),
    )


def test_threads_sleep_between_runs_by_default(tiny_model: Path, gpus: Any) -> None:
    gpus(None, present=False)
    session, _ = create_session(tiny_model, RuntimeSpec(device="cpu"), ["cpu"])
    assert _spin(session) == ("0", "0")


def test_a_spinning_solo_session_stops_spinning_when_its_runs_return_and_the_overlap_never_spins(
    tiny_model: Path, gpus: Any
) -> None:
    gpus(None, present=False)
    spec = RuntimeSpec(
        device="cpu", intra_op_num_threads=2, overlap_intra_op_num_threads=1, allow_spinning=True
    )
    session, _ = create_session(tiny_model, spec, ["cpu"])
    assert isinstance(session, runtime.AdaptiveSession)
    assert _spin(session._solo) == ("1", "1")
    assert _spin(session._overlap) == ("0", "0")
    assert _run(session) == [[2.0, 3.0]]


@pytest.mark.filterwarnings("ignore:Specified provider:UserWarning")
def test_create_session_reports_cpu_when_ort_silently_drops_the_cuda_provider(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert CUDA not in onnxruntime.get_available_providers()  # this machine's CPU-only ORT
    _choose(monkeypatch, RuntimeInfo(CUDA, "cuda:1", "cuda", None, ("1",)))
    session, info = create_session(tiny_model, RuntimeSpec(device="cuda"), ["cuda", "cpu"])
    assert session.get_providers() == [CPU]
    _assert_fell_back_to_cpu(info, ("1",))
    assert _run(session) == [[2.0, 3.0]]


def _assert_fell_back_to_cpu(info: RuntimeInfo, gpu_ids: tuple[str, ...]) -> None:
    """The session runs on the CPU, still asked for CUDA, and says ORT could not start it."""
    assert (info.provider, info.device, info.requested, info.gpu_ids) == (
        CPU,
        "cpu",
        "cuda",
        gpu_ids,
    )
    assert info.fallback_reason is not None
    assert f"onnxruntime could not start {CUDA}" in info.fallback_reason


class _FakeSession:
    def __init__(self, providers: list[str]) -> None:
        self._providers = providers

    def get_providers(self) -> list[str]:
        return list(self._providers)


def test_create_session_keeps_the_gpu_info_when_ort_really_started_the_provider(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = RuntimeInfo(CUDA, "cuda:0", "cuda", None, ("0",))
    _choose(monkeypatch, chosen)
    asked: list[list[str]] = []

    def fake(path: str, sess_options: Any = None, providers: list[str] | None = None) -> Any:
        asked.append(list(providers or []))
        return _FakeSession(list(providers or []))

    monkeypatch.setattr(onnxruntime, "InferenceSession", fake)
    _, info = create_session(tiny_model, RuntimeSpec(device="cuda"), ["cuda", "cpu"])
    assert asked == [[CUDA, CPU]]  # the GPU first, the CPU for ops it lacks
    assert info == chosen


def test_create_session_falls_back_from_tensorrt_to_cuda_on_the_same_gpu(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _choose(monkeypatch, RuntimeInfo(TRT, "cuda:0", "cuda", None, ("0",)))
    asked: list[list[str]] = []

    def no_tensorrt_libs(
        path: str, sess_options: Any = None, providers: list[str] | None = None
    ) -> Any:
        asked.append(list(providers or []))
        return _FakeSession([p for p in providers or [] if p != TRT])

    monkeypatch.setattr(onnxruntime, "InferenceSession", no_tensorrt_libs)
    _, info = create_session(tiny_model, RuntimeSpec(device="cuda"), ["tensorrt", "cuda"])
    assert asked == [[TRT, CUDA, CPU]]  # CUDA behind TensorRT, so the GPU is still used
    assert (info.provider, info.device, info.requested, info.gpu_ids) == (
        CUDA,
        "cuda:0",
        "cuda",
        ("0",),
    )
    assert info.fallback_reason is not None
    assert f"onnxruntime could not start {TRT}" in info.fallback_reason


def test_create_session_retries_cpu_only_when_ort_raises_for_the_gpu_provider(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _choose(monkeypatch, RuntimeInfo(CUDA, "cuda:0", "cuda", None, ("0",)))
    real = onnxruntime.InferenceSession
    asked: list[list[str]] = []

    def strict(path: str, sess_options: Any = None, providers: list[str] | None = None) -> Any:
        asked.append(list(providers or []))
        if providers != [CPU]:
            raise RuntimeError("CUDA failure 100: no CUDA-capable device is detected\nSECOND-LINE")
        return real(path, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(onnxruntime, "InferenceSession", strict)
    session, info = create_session(tiny_model, RuntimeSpec(device="cuda"), ["cuda", "cpu"])
    assert asked == [[CUDA, CPU], [CPU]]
    assert session.get_providers() == [CPU]
    _assert_fell_back_to_cpu(info, ("0",))
    assert "no CUDA-capable device" in info.fallback_reason
    assert "SECOND-LINE" not in info.fallback_reason  # first line only: /v1/models stays readable
    assert _run(session) == [[2.0, 3.0]]


@pytest.mark.filterwarnings("ignore:Specified provider:UserWarning")
def test_create_session_raises_the_cpu_error_when_even_the_cpu_retry_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidProtobuf

    _choose(monkeypatch, RuntimeInfo(CUDA, "cuda:0", "cuda", None, ("0",)))
    real = onnxruntime.InferenceSession
    asked: list[list[str]] = []

    def recording(path: str, sess_options: Any = None, providers: list[str] | None = None) -> Any:
        asked.append(list(providers or []))
        return real(path, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(onnxruntime, "InferenceSession", recording)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(InvalidProtobuf):
        create_session(broken, RuntimeSpec(device="cuda"), ["cuda", "cpu"])
    assert asked == [[CUDA, CPU], [CPU]]  # a broken model is not hidden behind a "fallback"
