"""One caller's refused input never fails the other items of its batch (deployments.base)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import pytest

from deployments.base import ModelBinding, ModelServer, Queued, raised
from serving import metrics
from serving.errors import InvalidInput, ModelFailure


class _Model:
    """Refuses the whole batch when any item is "tiny" (as the real models validate); fails
    (5xx) on "crash"; else answers per item."""

    ort_calls = 0

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def predict(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        for i, x in enumerate(items):
            if x == "tiny":
                raise InvalidInput(f"image {i} has shape [1, 1, 3]")
            if x == "crash":
                raise ModelFailure("onnxruntime failed")
        return [f"seen {x}" for x in items]


def _q(*items: str) -> list[Queued]:
    return [Queued(time.perf_counter(), x) for x in items]


def _server() -> tuple[Any, _Model]:
    server: Any = object.__new__(ModelServer)
    model = _Model()
    server._model = model
    server._binding = ModelBinding(
        name="detector", version=1, task="detection", tracking_uri="x", data_dir="x"
    )
    server._batch_sizes, server._batches, server._items = deque(maxlen=8), 0, 0
    return server, model


def test_a_refused_item_gets_its_error_and_the_rest_of_the_batch_its_answers() -> None:
    server, model = _server()
    out = asyncio.run(server._run_batch(_q("a", "tiny", "b")))
    assert out[0] == "seen a" and out[2] == "seen b"
    assert isinstance(out[1], InvalidInput) and out[1].message == "image 0 has shape [1, 1, 3]"
    assert model.batches == [["a", "tiny", "b"], ["a"], ["tiny"], ["b"]]  # then one by one
    assert raised(out[0]) == "seen a"
    with pytest.raises(InvalidInput):
        raised(out[1])
    assert (server._batches, server._items) == (1, 3)


def test_a_clean_batch_runs_once_and_a_lone_refusal_or_a_model_failure_is_raised() -> None:
    server, model = _server()
    assert asyncio.run(server._run_batch(_q("a", "b"))) == ["seen a", "seen b"]
    assert model.batches == [["a", "b"]]
    with pytest.raises(InvalidInput):
        asyncio.run(server._run_batch(_q("tiny")))
    with pytest.raises(ModelFailure):  # a server-side failure is the whole batch's
        asyncio.run(server._run_batch(_q("a", "crash")))
    assert model.batches[-1] == ["a", "crash"]


def test_each_item_of_a_batch_counts_its_queue_wait_and_the_batch_stages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[dict[str, float], dict[str, str]]] = []
    monkeypatch.setattr(metrics, "observe_stages", lambda stages, **kw: seen.append((stages, kw)))
    server, model = _server()
    model.stage_times = {"decode": 0.002, "model": 0.03, "postprocess": 0.001}  # type: ignore[attr-defined]
    early = Queued(time.perf_counter() - 0.05, "a")  # arrived 50 ms before the batch ran
    asyncio.run(server._run_batch([early, *_q("b")]))
    assert [kw for _, kw in seen] == [{"model": "detector", "version": "1"}] * 2
    (first, _), (second, _) = seen
    assert {k: first[k] for k in ("decode", "model", "postprocess")} == model.stage_times  # type: ignore[attr-defined]
    assert first["queue"] >= 0.05 > second["queue"] >= 0


def test_a_model_without_stage_times_counts_the_batch_as_its_model_stage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[dict[str, float]] = []
    monkeypatch.setattr(metrics, "observe_stages", lambda stages, **kw: seen.append(stages))
    server, _ = _server()
    asyncio.run(server._run_batch(_q("a")))
    assert sorted(seen[0]) == ["model", "queue"] and seen[0]["model"] > 0
