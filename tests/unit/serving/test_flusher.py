"""The bounded queue + background flusher shared by the audit writer and the drift capture."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest

from serving.flusher import BackgroundFlusher

LONG = 60.0  # an interval that never fires during a test: only size or flush() hand over


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


class Recorder:
    """A handler that keeps every batch; optionally blocks each call until ``release``."""

    def __init__(self, *, block: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.attempts: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not block:
            self.release.set()

    def __call__(self, batch: list[int], attempt: int) -> Sequence[int]:
        self.entered.set()
        assert self.release.wait(10)
        self.batches.append(batch)
        self.attempts.append(attempt)
        return []

    @property
    def items(self) -> list[int]:
        return [i for b in self.batches for i in b]


def test_a_full_batch_is_handed_over_without_waiting_for_the_interval() -> None:
    rec = Recorder()
    f = BackgroundFlusher(rec, max_pending=100, batch_size=3, flush_interval_s=LONG)
    for i in range(7):
        assert f.submit(i)
    assert wait_until(lambda: len(rec.batches) == 2)
    assert rec.batches == [[0, 1, 2], [3, 4, 5]]
    assert f.pending == 1  # a partial batch waits for the interval or a flush
    assert f.flush(timeout=5)
    assert rec.batches == [[0, 1, 2], [3, 4, 5], [6]]
    assert (f.submitted, f.dropped, f.pending) == (7, 0, 0)
    f.close()


def test_a_partial_batch_is_handed_over_after_the_interval() -> None:
    rec = Recorder()
    f = BackgroundFlusher(rec, max_pending=100, batch_size=100, flush_interval_s=0.02)
    f.submit(1)
    f.submit(2)
    assert wait_until(lambda: rec.items == [1, 2])  # no flush(): the interval did it
    assert all(len(b) < 100 for b in rec.batches)
    f.close()


def test_the_thread_starts_at_the_first_submit() -> None:
    f = BackgroundFlusher(Recorder(), max_pending=10, batch_size=1, flush_interval_s=LONG)
    assert not f.running
    assert f.flush(timeout=0)  # nothing accepted: nothing to wait for
    f.submit(1)
    assert f.running
    f.close()


def test_a_full_queue_refuses_and_counts_while_the_handler_is_stuck() -> None:
    rec = Recorder(block=True)
    f = BackgroundFlusher(rec, max_pending=3, batch_size=1, flush_interval_s=LONG)
    assert f.submit(0)
    assert rec.entered.wait(5)  # the thread holds [0] inside the handler
    assert [f.submit(i) for i in range(1, 6)] == [True, True, True, False, False]
    assert (f.pending, f.submitted, f.dropped) == (3, 4, 2)
    assert f.flush(timeout=0.05) is False  # still stuck: flush times out rather than lie
    rec.release.set()
    assert f.flush(timeout=5)
    assert rec.items == [0, 1, 2, 3]
    assert f.pending == 0
    f.close()


def test_a_batch_given_back_is_retried_first_with_its_attempt_number() -> None:
    calls: list[tuple[list[int], int]] = []

    def fails_once(batch: list[int], attempt: int) -> list[int]:
        calls.append((batch, attempt))
        return batch if len(calls) == 1 else []

    f = BackgroundFlusher(fails_once, max_pending=10, batch_size=2, flush_interval_s=0.01)
    f.submit(1)
    f.submit(2)
    assert f.flush(timeout=5)
    assert calls[:2] == [([1, 2], 1), ([1, 2], 2)]
    assert f.dropped == 0
    f.close()


def test_a_retry_gives_way_to_newer_items_when_the_queue_is_full() -> None:
    release = threading.Event()
    entered = threading.Event()
    done: list[int] = []

    def first_call_fails(batch: list[int], attempt: int) -> list[int]:
        if not entered.is_set():
            entered.set()
            assert release.wait(10)
            return batch  # the sink was down
        done.extend(batch)
        return []

    f = BackgroundFlusher(first_call_fails, max_pending=4, batch_size=2, flush_interval_s=0.01)
    f.submit(0)
    f.submit(1)
    assert entered.wait(5)
    assert all(f.submit(i) for i in range(2, 6))  # the queue is now full
    release.set()
    assert f.flush(timeout=5)
    assert done == [2, 3, 4, 5]  # 0 and 1 were pushed out, not retried
    assert f.dropped == 2
    f.close()


def test_a_handler_that_raises_does_not_kill_the_thread() -> None:
    done: list[int] = []

    def odd(batch: list[int], attempt: int) -> list[int]:
        if batch == [1]:
            raise RuntimeError("bug in a handler")
        done.extend(batch)
        return []

    f = BackgroundFlusher(odd, max_pending=10, batch_size=1, flush_interval_s=LONG)
    f.submit(1)
    assert f.flush(timeout=5)
    f.submit(2)
    assert f.flush(timeout=5)
    assert done == [2] and f.dropped == 1
    f.close()


def test_close_hands_over_what_is_queued_then_stops_the_thread() -> None:
    rec = Recorder()
    f = BackgroundFlusher(rec, max_pending=10, batch_size=100, flush_interval_s=LONG)
    for i in range(5):
        f.submit(i)
    assert f.close(timeout=5)
    assert not f.running
    assert rec.items == [0, 1, 2, 3, 4]
    assert f.closed and f.submit(9) is False and f.dropped == 1


def test_close_gives_up_on_a_batch_whose_sink_stays_down() -> None:
    calls: list[int] = []

    def down(batch: list[int], attempt: int) -> list[int]:
        calls.append(attempt)
        return batch

    f = BackgroundFlusher(down, max_pending=10, batch_size=3, flush_interval_s=0.01)
    for i in range(3):
        f.submit(i)
    assert wait_until(lambda: len(calls) >= 2)  # retrying, with backoff
    assert f.close(timeout=0.05) is False
    assert wait_until(lambda: not f.running)
    assert (f.pending, f.dropped) == (0, 3)  # given up on, and counted


def test_close_without_waiting_lets_the_thread_drain_on_its_own() -> None:
    rec = Recorder(block=True)
    f = BackgroundFlusher(rec, max_pending=10, batch_size=2, flush_interval_s=LONG)
    for i in range(5):
        f.submit(i)
    assert rec.entered.wait(5)
    assert f.close(wait=False) is False  # returns at once; the handler is still stuck
    assert f.submit(9) is False
    rec.release.set()
    assert wait_until(lambda: not f.running)
    assert rec.items == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "limits",
    [
        {"max_pending": 0, "batch_size": 1, "flush_interval_s": 1.0},
        {"max_pending": 1, "batch_size": 0, "flush_interval_s": 1.0},
        {"max_pending": 1, "batch_size": 1, "flush_interval_s": 0.0},
        {"max_pending": 1, "batch_size": 1, "flush_interval_s": float("nan")},
    ],
)
def test_bad_limits_are_refused_with_the_values(limits: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="expected positive values"):
        BackgroundFlusher(Recorder(), **limits)  # type: ignore[arg-type]
