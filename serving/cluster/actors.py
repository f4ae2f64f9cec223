"""What the platform's singleton actors share (rollout controller, drift monitor).

Each is one named, detached Ray actor per cluster that Ray restarts when it dies; its state is
on disk, so a restart resumes. Calls and the periodic loop share one lock (the wrapped object
is plain, single-threaded Python), and the loop starts on the first call: an actor constructor
has no running event loop to start it from.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("canaryserve.actors")
NAMESPACE = "canaryserve"


def lower_priority(nice: int, idle: bool = False) -> None:
    """Give every thread of this process the OS niceness ``nice`` (never raises it back).

    On Linux niceness is per thread and a new thread inherits its creator's, so a process that
    only calls ``os.nice`` from one thread keeps its other threads (an actor's event loop and
    the executor threads it starts) at full priority; renicing each task fixes that. Called
    again later it catches threads started since. Lowering one's own priority needs no
    privilege; where ``/proc`` is missing, only the calling thread is lowered.

    ``idle`` also moves every thread to ``SCHED_IDLE`` (Linux): nice 19 still competes for the
    CPU with some weight and is not always preempted when a request-path process wakes up, an
    idle-policy thread always is. It runs on CPU time nobody else wants."""
    if nice <= 0 and not idle:
        return
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        os.nice(max(0, nice - os.getpriority(os.PRIO_PROCESS, 0)))
        return
    idle_policy = getattr(os, "SCHED_IDLE", None) if idle else None
    for tid in tids:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
            if idle_policy is not None and os.sched_getscheduler(tid) != idle_policy:
                os.sched_setscheduler(tid, idle_policy, os.sched_param(0))
        except OSError:
            continue  # the thread ended in between


class TickingActor:
    """Base of a singleton actor wrapping ``self.target``, calling ``tick()`` every ``tick_s``."""

    target: Any

    def __init__(self, tick_s: float) -> None:
        self.tick_s = tick_s
        self._lock = threading.Lock()
        self._loop_task: asyncio.Task[None] | None = None
        self.started_at = time.time()

    def tick(self) -> None:
        """One round of periodic work (runs in a thread, under the lock)."""

    def round(self) -> None:
        """One pass of the loop (in a thread): ``tick`` under the lock. An actor whose round
        waits on another actor does that wait here, outside the lock, so that its calls (a
        status read, the ingress's route poll) never queue behind someone else's work."""
        self._locked(self.tick)

    def _locked(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        with self._lock:
            return fn(*args, **kw)

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.round)
            except Exception:
                log.exception("%s tick failed", type(self).__name__)
            await asyncio.sleep(self.tick_s)

    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._loop())

    async def ping(self) -> dict[str, Any]:
        self._ensure_loop()
        return {"started_at": self.started_at}

    async def call(self, method: str, *args: Any, **kw: Any) -> Any:
        """A method of ``target``, off the event loop; errors come back as CanaryErrors."""
        self._ensure_loop()
        return await asyncio.to_thread(self._locked, getattr(self.target, method), *args, **kw)


def ensure_actor(cls: type, name: str, *args: Any, max_concurrency: int = 16) -> Any:
    """Get or create the named singleton actor ``cls(*args)`` and wait until it answers."""
    import ray

    handle: Any = (
        ray.remote(cls)
        .options(
            name=name,
            namespace=NAMESPACE,
            get_if_exists=True,
            lifetime="detached",
            num_cpus=0,
            max_restarts=-1,
            max_task_retries=0,
            max_concurrency=max_concurrency,
        )
        .remote(*args)
    )
    ray.get(handle.ping.remote(), timeout=120)
    return handle


def get_actor(name: str) -> Any | None:
    import ray

    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None
