"""Stand-ins for what the audit writer talks to: a record sink, an input store, a clock.

Each one lets a test hold the writer at a known point (a write that hangs until released, a
clock that reads what the test says) instead of sleeping and hoping a thread got there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from serving.audit import AdminRecord, AuditStore, InputStore, RequestRecord

T = TypeVar("T")


class Sink:
    """A record sink that notes the size of every write that went in, before an optional store.

    With ``gated``, every write waits for ``release`` (a database that hangs until told) and
    sets ``entered`` first. The calls numbered in ``fail_calls`` (from 1) raise OSError, an
    outage; a write holding an id in ``poison`` raises ValueError, a record that can never go in.
    """

    def __init__(
        self,
        inner: AuditStore | None = None,
        *,
        gated: bool = False,
        fail_calls: Iterable[int] = (),
        poison: Iterable[str] = (),
    ) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()
        if not gated:
            self.release.set()
        self.fail_calls = set(fail_calls)
        self.poison = set(poison)
        self.calls = 0
        self.batches: list[int] = []

    def write_requests(self, records: list[RequestRecord]) -> int:
        self.calls += 1
        call = self.calls
        self.entered.set()
        self.release.wait()
        if call in self.fail_calls:
            raise OSError("disk I/O error")
        if any(r.request_id in self.poison for r in records):
            raise ValueError("cannot store this record")
        self.batches.append(len(records))
        return len(records) if self.inner is None else self.inner.write_requests(records)

    def write_admin(self, records: list[AdminRecord]) -> int:
        return len(records) if self.inner is None else self.inner.write_admin(records)


class HeldInputs(InputStore):
    """An input store whose writes wait for ``release`` (a disk that hangs until told)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.release = threading.Event()

    def put(self, sha: str, data: bytes) -> bool:
        self.release.wait()
        return super().put(sha, data)


class FakeClock:
    """Stands in for the ``time`` module of :mod:`serving.audit.writer`.

    ``monotonic()`` reads ``now``; ``on_read``, when set, runs at every reading with the number
    of readings so far, so a test can act at the moment the writer looks at the clock.
    """

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.reads = 0
        self.on_read: Callable[[int], None] | None = None

    def set_after_the_first_reading(self, event: threading.Event) -> None:
        """Set ``event`` at the second reading: once a call has read its deadline."""
        self.on_read = lambda reads: event.set() if reads > 1 else None

    def monotonic(self) -> float:
        self.reads += 1
        if self.on_read is not None:
            self.on_read(self.reads)
        return self.now


def returns_within(call: Callable[[], T], seconds: float = 10.0) -> T:
    """``call()`` run in a thread; fails the test if it is still running after ``seconds``."""
    results: list[T] = []
    thread = threading.Thread(target=lambda: results.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    assert results, "the call raised"
    return results[0]


def until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
