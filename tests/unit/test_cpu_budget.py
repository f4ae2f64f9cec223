"""load_tests.cpu_budget reads every process's CPU time from /proc."""

from __future__ import annotations

import os
import time

from load_tests.cpu_budget import cpu_seconds


def test_this_process_is_counted_and_its_cpu_grows() -> None:
    before = cpu_seconds()[os.getpid()][1]
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # burn 0.3 s of CPU
        pass
    name, after = cpu_seconds()[os.getpid()]
    assert "python" in name
    assert after - before >= 0.25
