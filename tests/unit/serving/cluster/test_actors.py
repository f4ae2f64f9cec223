"""serving.cluster.actors helpers that need no Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="per-thread niceness is Linux")
def test_lower_priority_renices_every_thread_and_threads_started_later() -> None:
    # In a child process: lowering this (pytest's) process would slow the rest of the suite.
    code = textwrap.dedent(
        """
        import json, os, threading
        from serving.cluster.actors import lower_priority

        stop = threading.Event()
        early = threading.Thread(target=stop.wait)
        early.start()
        lower_priority(7)
        seen = {}
        def later():
            seen["later"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        t = threading.Thread(target=later); t.start(); t.join()
        seen["early"] = os.getpriority(os.PRIO_PROCESS, early.native_id)
        seen["main"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        lower_priority(3)  # never raises priority back
        seen["after_lower_ask"] = os.getpriority(os.PRIO_PROCESS, early.native_id)
        stop.set(); early.join()
        print(json.dumps(seen))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    want = max(7, os.getpriority(os.PRIO_PROCESS, 0))  # if the runner itself is niced past 7
    seen = json.loads(out.stdout)
    assert seen == {"later": want, "early": want, "main": want, "after_lower_ask": want}
