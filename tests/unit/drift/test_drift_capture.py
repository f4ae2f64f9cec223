from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from deployments.types import Detection
from drift import capture
from drift.capture import CaptureJob, CaptureQueue, CpuBudget


def _job(i: int, nodes: int = 1, ts: float | None = None) -> CaptureJob:
    image = np.full((48, 64, 3), 100 + i % 50, np.uint8)
    det = Detection(box=(4.0, 4.0, 20.0, 30.0), score=0.9, label="person")
    names = tuple((f"n{k}", "detector", "detections") for k in range(nodes))
    return CaptureJob(
        names,
        image,
        {f"n{k}": [det] for k in range(nodes)},
        {"detector": 1},
        "live",
        f"r{i}",
        time.time() if ts is None else ts,
    )


def test_jobs_become_rows_in_batches() -> None:
    got: list[list[dict[str, Any]]] = []
    q = CaptureQueue(got.append, batch_size=4, flush_interval_s=0.05)
    for i in range(10):
        assert q.submit(_job(i))
    assert q.flush(5)
    rows = [r for batch in got for r in batch]
    assert [r["request_id"] for r in rows] == [f"r{i}" for i in range(10)]
    assert all(len(b) <= 4 for b in got)
    assert rows[0]["model"] == "detector" and rows[0]["version"] == "1"
    assert rows[0]["pred_count"] == 1.0 and rows[0]["width"] == 64.0
    assert q.sent_rows == 10 and q.dropped_rows == 0


def test_a_blocked_monitor_never_blocks_submit_and_the_queue_stays_bounded() -> None:
    release, entered = threading.Event(), threading.Event()

    def stuck(rows: list[dict[str, Any]]) -> None:
        entered.set()
        release.wait(10)

    q = CaptureQueue(stuck, max_pending=8, batch_size=2, flush_interval_s=0.01)
    q.submit(_job(0, nodes=2))
    assert entered.wait(5)  # the sender thread is now stuck inside the sink
    results: list[bool] = []
    submitted = threading.Event()

    def submit_all() -> None:
        results.extend(q.submit(_job(i, nodes=2)) for i in range(1, 200))
        submitted.set()

    # In a thread, so a submit that waits on the stuck sink fails the test, not hangs it.
    threading.Thread(target=submit_all, daemon=True).start()
    assert submitted.wait(30), "submit waited on the stuck sink"
    accepted = 1 + sum(results)
    assert q.pending <= 8
    # The thread holds at most one batch; everything else beyond the bound is counted.
    assert accepted <= 8 + 2 + 2
    assert q.dropped_rows == (200 - accepted) * 2
    release.set()
    assert q.flush(5)


def test_a_failing_monitor_counts_dropped_rows_and_capture_goes_on() -> None:
    calls = {"n": 0}

    def flaky(rows: list[dict[str, Any]]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("monitor is restarting")

    q = CaptureQueue(flaky, batch_size=3, flush_interval_s=0.01)
    for i in range(3):
        q.submit(_job(i))
    assert q.flush(5)
    for i in range(3, 6):
        q.submit(_job(i))
    assert q.flush(5)
    assert q.failed_batches == 1 and q.dropped_rows == 3 and q.sent_rows == 3


def test_sampling_skips_jobs() -> None:
    values = iter([0.1, 0.9, 0.2, 0.95])
    q = CaptureQueue(lambda rows: None, sample_rate=0.5, rng=lambda: next(values))
    assert [q.submit(_job(i)) for i in range(4)] == [True, False, True, False]
    assert q.skipped_jobs == 2


def test_an_undecodable_job_is_dropped_not_fatal() -> None:
    got: list[dict[str, Any]] = []
    q = CaptureQueue(got.extend, flush_interval_s=0.01)
    bad = CaptureJob(
        (("n", "detector", "detections"),),
        "not an image",
        {"n": []},
        {"detector": 1},
        "live",
        "bad",
        time.time(),
    )
    q.submit(bad)
    q.submit(_job(1))
    assert q.flush(5)
    assert [r["request_id"] for r in got] == ["r1"]
    assert q.dropped_rows == 1


def test_bad_limits() -> None:
    with pytest.raises(ValueError, match="max_pending=0"):
        CaptureQueue(lambda rows: None, max_pending=0)
    with pytest.raises(ValueError, match="max_age_s"):
        CaptureQueue(lambda rows: None, max_age_s=0)


def test_a_capture_that_fell_behind_drops_what_is_too_old_and_catches_up() -> None:
    now = [1000.0]
    got: list[dict[str, Any]] = []
    q = CaptureQueue(
        got.extend, batch_size=8, flush_interval_s=0.01, max_age_s=30, clock=lambda: now[0]
    )
    for i in range(4):
        q.submit(_job(i, nodes=2, ts=960.0 + i * 5))  # 40, 35, 30 and 25 s old
    assert q.flush(5)
    assert sorted({r["request_id"] for r in got}) == ["r2", "r3"]  # 30 s is not too old
    assert q.stale_rows == 4 and q.dropped_rows == 4 and q.sent_rows == 4


def test_a_shadow_reuses_its_requests_input_features_and_embedding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    measured: list[int] = []
    real = capture.input_row

    def counting(value: Any) -> dict[str, float]:
        measured.append(id(value))
        return real(value)

    monkeypatch.setattr(capture, "input_row", counting)

    class Embedder:
        available = True

        def __init__(self) -> None:
            self.calls: list[int] = []

        def rows(self, values: list[Any]) -> list[dict[str, float]]:
            self.calls.append(len(values))
            return [{"emb_0": float(v.mean())} for v in values]

    embedder = Embedder()
    got: list[dict[str, Any]] = []
    q = CaptureQueue(
        got.extend, batch_size=64, flush_interval_s=5, embedder=embedder, embedding_sample_rate=1
    )
    live = [_job(i) for i in range(3)]
    shadows = [
        CaptureJob(j.nodes, j.value, j.raw, {"detector": 2}, "shadow", j.request_id, j.ts)
        for j in live
    ]
    for job in (live[0], shadows[0], live[1]):  # a live row and its shadow in one batch ...
        q.submit(job)
    assert q.flush(5)
    for job in (shadows[1], live[2], shadows[2]):  # ... and a shadow in a later batch
        q.submit(job)
    assert q.flush(5)
    assert len(measured) == 3 and sum(embedder.calls) == 3  # once per request, not per row
    by = {(r["request_id"], r["source"]): r for r in got}
    assert len(by) == 6
    for i in range(3):
        mine, theirs = by[(f"r{i}", "live")], by[(f"r{i}", "shadow")]
        assert theirs["version"] == "2" and mine["version"] == "1"
        assert {k: v for k, v in theirs.items() if k not in ("source", "version")} == {
            k: v for k, v in mine.items() if k not in ("source", "version")
        }
        assert "emb_0" in theirs


def test_capture_measures_requests_while_its_cpu_budget_lasts_and_sheds_the_rest_with_their_shadows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu, now = [0.0], [0.0]
    real = capture.input_row

    def costly(value: Any) -> dict[str, float]:
        cpu[0] += 0.5  # each measurement costs the thread half a CPU second
        return real(value)

    monkeypatch.setattr(capture, "input_row", costly)
    budget = CpuBudget(0.1, burst_s=1.0, clock=lambda: now[0])
    got: list[dict[str, Any]] = []
    q = CaptureQueue(
        got.extend, batch_size=64, flush_interval_s=5, cpu_budget=budget, cpu_clock=lambda: cpu[0]
    )
    live = [_job(i) for i in range(4)]
    for job in live:
        q.submit(job)
    for job in (live[0], live[2]):  # their shadows come later
        q.submit(
            CaptureJob(
                job.nodes, job.value, job.raw, {"detector": 2}, "shadow", job.request_id, job.ts
            )
        )
    assert q.flush(5)
    assert [(r["request_id"], r["source"]) for r in got] == [
        ("r0", "live"), ("r1", "live"), ("r0", "shadow")
    ]  # fmt: skip
    assert q.shed_rows == 3 and q.sent_rows == 3 and q.dropped_rows == 0
    assert budget.level == pytest.approx(0.0)
    now[0] += 5.0  # 5 s at a tenth of a core: half a CPU second, one more measurement
    q.submit(_job(9))
    q.submit(_job(10))
    assert q.flush(5)
    assert [r["request_id"] for r in got[3:]] == ["r9"] and q.shed_rows == 4


def test_a_request_is_embedded_only_if_budget_is_left_after_its_features(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu = [0.0]
    real = capture.input_row

    def costly(value: Any) -> dict[str, float]:
        cpu[0] += 0.3
        return real(value)

    class Embedder:
        available = True

        def rows(self, values: list[Any]) -> list[dict[str, float]]:
            cpu[0] += 0.4
            return [{"emb_00": 1.0} for _ in values]

    monkeypatch.setattr(capture, "input_row", costly)
    got: list[dict[str, Any]] = []
    q = CaptureQueue(
        got.extend,
        flush_interval_s=5,
        embedder=Embedder(),
        embedding_sample_rate=1.0,
        cpu_budget=CpuBudget(0.1, burst_s=1.0, clock=lambda: 0.0),
        cpu_clock=lambda: cpu[0],
    )
    for i in range(3):
        q.submit(_job(i))
    assert q.flush(5)
    # r0: 1.0 left, features 0.3, embedding 0.4 -> 0.3 left; r1: features take it to 0.0,
    # nothing left for its embedding; r2: shed.
    assert [(r["request_id"], "emb_00" in r) for r in got] == [("r0", True), ("r1", False)]
    assert q.embedded_jobs == 1 and q.shed_rows == 1


def test_the_queue_is_bounded_by_the_bytes_its_inputs_hold() -> None:
    from serving.pipelines.ops import Clip

    release = threading.Event()
    got: list[dict[str, Any]] = []

    def slow(rows: list[dict[str, Any]]) -> None:
        release.wait(5)
        got.extend(rows)

    q = CaptureQueue(slow, batch_size=1, flush_interval_s=0.01, max_pending_bytes=10_000_000)
    frames = [np.zeros((720, 1280, 3), np.uint8) for _ in range(2)]  # 5.5 MB of frames
    clips = [
        CaptureJob(
            (("n0", "action", "actions"),),
            Clip(frames=frames, fps=10.0),
            {"n0": []},
            {"action": 1},
            "live",
            f"c{i}",
            time.time(),
        )
        for i in range(3)
    ]
    accepted = [q.submit(job) for job in clips]
    assert accepted == [True, False, False]  # a second 5.5 MB clip would pass 10 MB
    assert q.pending_bytes == 2 * 720 * 1280 * 3 and q.dropped_rows == 2
    assert q.submit(_job(7))  # a small image still fits
    release.set()
    assert q.flush(10)
    assert q.pending_bytes == 0
    assert q.submit(clips[1])  # room again once the thread is done with them
    assert q.flush(10)
