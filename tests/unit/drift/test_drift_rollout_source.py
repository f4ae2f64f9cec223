"""The rollout controller's drift source (``drift.actor.rollout_drift``): a bounded wait.

Ray's calls are swapped for futures here (unit tests never start Ray); the logic is the one
that runs in the controller's process: one measurement at a time per rollout window, the last
finished one standing in while a newer one runs, ``EvidencePending`` while there is none.
"""

from __future__ import annotations

from concurrent import futures
from types import SimpleNamespace
from typing import Any

import pytest

from drift import actor
from serving.rollouts.evidence import DriftEvidence, EvidencePending

ASK = ("detector", 1, 2, 1000.0, 20)


class FakeMonitor:
    """The monitor actor's ``call.remote``: a future per call, finished by the test."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.pending: list[futures.Future[Any]] = []
        self.call = SimpleNamespace(remote=self._remote)

    def _remote(self, method: str, *args: Any) -> futures.Future[Any]:
        self.calls.append((method, *args))
        f: futures.Future[Any] = futures.Future()
        self.pending.append(f)
        return f


def _wait(refs: list[futures.Future[Any]], timeout: float) -> tuple[list[Any], list[Any]]:
    done, not_done = futures.wait(refs, timeout=timeout)
    return list(done), list(not_done)


@pytest.fixture
def monitor(monkeypatch: pytest.MonkeyPatch) -> FakeMonitor:
    fake = FakeMonitor()
    monkeypatch.setattr(actor, "get_monitor", lambda: fake)
    monkeypatch.setattr(actor, "ray", SimpleNamespace(wait=_wait, get=lambda f: f.result()))
    monkeypatch.setattr(actor, "EVIDENCE_WAIT_S", 0.01)
    monkeypatch.setattr(actor, "_in_flight", {})
    monkeypatch.setattr(actor, "_finished", {})
    return fake


def _evidence(pairs: int) -> DriftEvidence:
    return DriftEvidence(pairs=pairs)


def test_a_busy_monitor_gets_one_measurement_per_window_and_the_last_answer_stands_in(
    monitor: FakeMonitor,
) -> None:
    with pytest.raises(EvidencePending, match="still measuring detector v2"):
        actor.rollout_drift(*ASK)
    with pytest.raises(EvidencePending):
        actor.rollout_drift(*ASK)  # the same measurement, not a second one queued behind it
    assert monitor.calls == [("rollout_drift", *ASK)]

    monitor.pending[0].set_result(_evidence(10))
    assert actor.rollout_drift(*ASK) == _evidence(10)
    # The next ask starts a newer measurement; while it runs, the last one answers.
    assert actor.rollout_drift(*ASK) == _evidence(10)
    assert len(monitor.calls) == 2
    monitor.pending[1].set_result(_evidence(30))
    assert actor.rollout_drift(*ASK) == _evidence(30)

    # Another window (the rollout moved on) never gets this window's answer.
    with pytest.raises(EvidencePending):
        actor.rollout_drift("detector", 1, 2, 1012.0, 20)


def test_a_failed_measurement_is_raised_once_and_the_next_ask_starts_over(
    monitor: FakeMonitor,
) -> None:
    with pytest.raises(EvidencePending):
        actor.rollout_drift(*ASK)
    monitor.pending[0].set_exception(RuntimeError("monitor restarted"))
    with pytest.raises(RuntimeError, match="monitor restarted"):
        actor.rollout_drift(*ASK)
    with pytest.raises(EvidencePending):
        actor.rollout_drift(*ASK)
    assert len(monitor.calls) == 2


def test_no_monitor_is_no_evidence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actor, "get_monitor", lambda: None)
    monkeypatch.setattr(actor, "_in_flight", {})
    assert actor.rollout_drift(*ASK) is None


def test_only_the_newest_windows_are_kept(monitor: FakeMonitor) -> None:
    for i in range(actor.KEEP_ASKS + 5):
        with pytest.raises(EvidencePending):
            actor.rollout_drift("detector", 1, 2, float(i), 20)
    assert len(actor._in_flight) == actor.KEEP_ASKS
    assert ("detector", 1, 2, 0.0, 20) not in actor._in_flight
