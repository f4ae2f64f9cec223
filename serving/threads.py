"""Thread priorities: background work that must not slow the request path."""

from __future__ import annotations

import os
import threading


def lower_thread_priority(niceness: int) -> None:
    """Make the calling thread ``niceness`` steps nicer than its process (Linux: a thread is a
    task of its own), so background work yields the cores to the request path under load.
    Elsewhere, or when refused, the thread keeps its priority."""
    if niceness <= 0:
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(
            os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness)
        )
    except (AttributeError, OSError):
        pass
