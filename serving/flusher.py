"""A bounded in-memory queue that one background thread drains in batches.

The audit writer and the drift capture have the same problem: the request path must hand work
to slow I/O (a database, a Ray actor) without ever waiting on it. Both solve it here.
:meth:`BackgroundFlusher.submit` only appends to a bounded deque under a lock: O(1), no I/O, no
exception. When the queue is full the item is refused and counted, because making a request wait
for a slow sink is worse than losing one audit record or one drift row. A daemon thread, started
by the first submit, takes a batch when ``batch_size`` items are waiting or every
``flush_interval_s``, and passes it to a handler.

What a failed batch means differs between users, so the handler decides: it returns the items
to try again (the audit writer: a short database outage must not lose records) or nothing (the
capture: it drops and counts). Items kept for a retry stay inside ``max_pending``, and when the
queue behind them is full the oldest give way: by the time the sink is back they are the least
useful. Retries back off from ``flush_interval_s`` up to ``max_backoff_s``.

Ground floor: this module imports only the standard library.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from serving.threads import lower_thread_priority

T = TypeVar("T")

# (batch, attempt) -> the items of the batch to hand over again; attempt counts from 1.
Handler = Callable[[list[T], int], Sequence[T]]

log = logging.getLogger(__name__)


class BackgroundFlusher(Generic[T]):
    """Bounded queue of ``T`` drained by one daemon thread that calls ``handle(batch, attempt)``.

    Every accepted item is *settled* exactly once: when the handler is done with it, or when it
    is given up on (a retry pushed out by newer items, or the thread stopped by :meth:`close`).
    Items settle in the order they were accepted, so :meth:`flush` waits for "everything
    accepted before the call" by waiting for a number.
    """

    def __init__(
        self,
        handle: Handler[T],
        *,
        max_pending: int,
        batch_size: int,
        flush_interval_s: float,
        max_backoff_s: float = 5.0,
        name: str = "flusher",
        niceness: int = 0,
    ) -> None:
        if max_pending < 1 or batch_size < 1 or not flush_interval_s > 0 or not max_backoff_s > 0:
            raise ValueError(
                f"max_pending={max_pending!r}, batch_size={batch_size!r}, "
                f"flush_interval_s={flush_interval_s!r}, max_backoff_s={max_backoff_s!r}: "
                "expected positive values"
            )
        self._handle = handle
        self.max_pending = max_pending
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_backoff_s = max_backoff_s
        self.name = name
        self.niceness = niceness
        self._cond = threading.Condition()
        self._queue: deque[T] = deque()
        self._retry: list[T] = []  # the batch the handler gave back, handed over before the queue
        self._retry_attempt = 0  # the attempt that batch failed at
        self._thread: threading.Thread | None = None
        self._closed = False  # refuse new items; the thread drains the queue, then exits
        self._stopping = False  # the thread exits at its next turn, giving up what is left
        self._accepted = self._settled = self._flush_until = 0
        self._dropped = 0

    # --- the producer side -----------------------------------------------------------------

    def submit(self, item: T) -> bool:
        """Queue ``item``; False (and ``dropped`` + 1) when the queue is full or closed."""
        with self._cond:  # the thread holds it only to move a batch in or out: O(1)
            if self._closed or len(self._queue) + len(self._retry) >= self.max_pending:
                self._dropped += 1
                return False
            self._queue.append(item)
            self._accepted += 1
            if self._thread is None:
                # Started here, not in __init__: a flusher that never gets an item (drift or
                # inputs switched off at runtime) costs no thread.
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            elif len(self._queue) == self.batch_size:
                self._cond.notify()
            return True

    @property
    def pending(self) -> int:
        """Items queued or waiting for a retry (not counting a batch in the handler)."""
        with self._cond:
            return len(self._queue) + len(self._retry)

    @property
    def submitted(self) -> int:
        """Items accepted by :meth:`submit` so far."""
        with self._cond:
            return self._accepted

    @property
    def dropped(self) -> int:
        """Items refused (queue full or closed) or given up on (pushed out, or left at close)."""
        with self._cond:
            return self._dropped

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    @property
    def running(self) -> bool:
        """Whether the thread is alive (it starts at the first submit)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    # --- waiting and shutdown --------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Hand over a partial batch now and wait until everything accepted so far is settled.

        False when ``timeout`` seconds pass first; ``timeout=0`` only asks for the hand-over.
        """
        with self._cond:
            target = self._accepted
            self._flush_until = max(self._flush_until, target)
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._settled >= target, timeout=timeout)

    def close(self, timeout: float = 10.0, *, wait: bool = True) -> bool:
        """Refuse new items; True when everything accepted was handed over.

        With ``wait`` (the default) this waits up to ``timeout`` seconds for the queue to drain,
        then stops the thread: what is still left (a batch retried while its sink is down) is
        given up on and counted in ``dropped``. Without ``wait`` it returns at once and the
        thread drains the queue on its own, for callers whose shutdown must never block.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            if not wait:
                return self._settled >= self._accepted
        flushed = self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)  # a handler stuck in I/O keeps its daemon thread; we go on
        return flushed

    # --- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        lower_thread_priority(self.niceness)
        backoff = 0.0
        while True:
            with self._cond:
                if backoff:
                    self._cond.wait_for(lambda: self._stopping, timeout=backoff)
                else:
                    self._cond.wait_for(self._due, timeout=self.flush_interval_s)
                if self._stopping or (self._closed and not self._queue and not self._retry):
                    self._give_up(len(self._queue) + len(self._retry))
                    self._queue.clear()
                    self._retry = []
                    return
                batch, attempt = self._take()
            if not batch:
                backoff = 0.0
                continue
            again = self._call(batch, attempt)
            with self._cond:
                self._settle(len(batch), again, attempt)
            backoff = (
                min(max(2 * backoff, self.flush_interval_s), self.max_backoff_s) if again else 0.0
            )

    def _due(self) -> bool:
        return (
            self._stopping
            or self._closed
            or len(self._queue) >= self.batch_size
            or (self._settled < self._flush_until and bool(self._queue))
        )

    def _take(self) -> tuple[list[T], int]:
        # Called with the lock held. A retry goes first and alone, so items settle in order.
        if self._retry:
            batch, attempt = self._retry, self._retry_attempt + 1
            self._retry, self._retry_attempt = [], 0
            return batch, attempt
        n = min(self.batch_size, len(self._queue))
        return [self._queue.popleft() for _ in range(n)], 1

    def _call(self, batch: list[T], attempt: int) -> list[T]:
        try:
            return list(self._handle(batch, attempt))
        except Exception:
            # A handler is meant to catch its own errors; one that escapes must not kill the
            # thread (flush would then wait forever), so the batch counts as dropped.
            log.exception("%s: handler failed on %d items; dropping them", self.name, len(batch))
            with self._cond:
                self._dropped += len(batch)
            return []

    def _settle(self, n: int, again: list[T], attempt: int) -> None:
        # Called with the lock held. Keep the queue plus the retry within max_pending by giving
        # up on the oldest items of the retry: newer ones are worth more once the sink is back.
        self._settled += n - len(again)
        excess = min(len(again), len(again) + len(self._queue) - self.max_pending)
        if excess > 0:
            again = again[excess:]
            self._give_up(excess)
        self._retry, self._retry_attempt = again, attempt
        self._cond.notify_all()

    def _give_up(self, n: int) -> None:
        self._dropped += n
        self._settled += n
        self._cond.notify_all()
