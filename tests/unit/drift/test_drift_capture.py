from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from deployments.types import Detection
from drift.capture import CaptureJob, CaptureQueue


def _job(i: int, nodes: int = 1) -> CaptureJob:
    image = np.full((48, 64, 3), 100 + i % 50, np.uint8)
    det = Detection(box=(4.0, 4.0, 20.0, 30.0), score=0.9, label="person")
    names = tuple((f"n{k}", "detector", "detections") for k in range(nodes))
    return CaptureJob(
        names, image, {f"n{k}": [det] for k in range(nodes)}, {"detector": 1}, "live", f"r{i}", 1.0
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
        1.0,
    )
    q.submit(bad)
    q.submit(_job(1))
    assert q.flush(5)
    assert [r["request_id"] for r in got] == ["r1"]
    assert q.dropped_rows == 1


def test_bad_limits() -> None:
    with pytest.raises(ValueError, match="max_pending=0"):
        CaptureQueue(lambda rows: None, max_pending=0)
