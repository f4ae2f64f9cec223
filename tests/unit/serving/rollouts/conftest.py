"""The rollout manager's tests: the real SQLite MLflow store of the registry's tests, a real
SQLite rollout store, an injected clock, and a deployer that records what it was asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from drift.check import PredictionDriftCheck
from model_registry.mlflow_store import MlflowModelStore
from serving.canary.records import RolloutRecord
from serving.rollouts import checks
from serving.rollouts.checks import (
    ArmStats,
    CheckResult,
    WindowStats,
    get_check,
    register_check,
)
from serving.rollouts.controller.store import RolloutStore
from serving.rollouts.manager import RolloutManager
from serving.rollouts.spec import CheckSpec
from tests.unit.model_registry.conftest import migrated_db, store
from tests.unit.model_registry.test_validate import write_detector_dir

__all__ = ["migrated_db", "store"]

SPEC = {
    "model": "detector",
    "challenger_version": 2,
    "step_weights": [50, 100],
    "interval": "10s",
    "min_requests": 3,
    "threshold": 1,
    # Five calls per arm and window: the manager's tests judge each window alone (the
    # sequential checks, the default, need more evidence: test_rollout_sequential_machine.py).
    "checks": [
        {"name": "error_rate", "threshold": 0.05, "method": "window"},
        {"name": "latency_p99_ratio", "threshold": 2.0},
        {"name": "shadow_agreement", "threshold": 0.8, "method": "window"},
    ],
}


class RecordingDeployer:
    """The Ray boundary: deploys "at once" and records what it was asked to do."""

    def __init__(self) -> None:
        self.running: set[tuple[str, int]] = set()
        self.retired: list[tuple[str, int]] = []
        self.ensured: list[tuple[str, int]] = []
        self.instant = True  # False: ensure() only starts a deployment; tests mark it ready

    def ensure(self, model: str, version: int) -> None:
        self.ensured.append((model, version))
        if self.instant:
            self.running.add((model, version))

    def ready(self, model: str, version: int) -> bool:
        return (model, version) in self.running

    def retire(self, model: str, version: int) -> None:
        self.running.discard((model, version))
        self.retired.append((model, version))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def prediction_drift(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the plug-in as app assembly does (on a copy of the registry: no leaks)."""
    monkeypatch.setattr(checks, "CHECKS", dict(checks.CHECKS))
    register_check(PredictionDriftCheck())


@pytest.fixture
def setup(tmp_path: Path, store: MlflowModelStore):  # type: ignore[no-untyped-def]
    for i in (1, 2):
        store.register(write_detector_dir(tmp_path / f"v{i}"), description=f"v{i}")
    store.set_alias("detector", "champion", 1)
    clock, deployer = Clock(), RecordingDeployer()
    deployer.running.add(("detector", 1))
    manager = RolloutManager(
        RolloutStore(tmp_path / "rollouts.db"), store, deployer, clock=clock, drain_delay_s=5
    )
    return manager, store, deployer, clock


def traffic(manager: RolloutManager, rid: str, now: float, *, challenger_errors: bool) -> None:
    """Five calls per arm at ``now``; the challenger's all fail when ``challenger_errors``."""
    records = []
    for arm in ("champion", "challenger"):
        for _ in range(5):
            ok = not (challenger_errors and arm == "challenger")
            records.append(
                RolloutRecord(
                    rollout_id=rid,
                    model="detector",
                    ts=now,
                    kind="call",
                    arm=arm,
                    ok=ok,
                    latency_ms=10.0,
                )
            )
    manager.report(records)


def fail_the_first_step(manager: RolloutManager, clock: Clock) -> str:
    """Start SPEC, let its first interval pass with every challenger call failing, and judge
    it: error_rate rolls the rollout back. Returns the rollout's id."""
    rid: str = manager.start(SPEC)["id"]
    manager.tick()
    clock.now += 11
    traffic(manager, rid, clock.now - 1, challenger_errors=True)
    manager.tick()
    return rid


def arm(n: int, errors: int = 0, ms: float | None = 10.0) -> ArmStats:
    """An arm of ``n`` requests at ``ms`` each, the first ``errors`` of them failed."""
    out = ArmStats()
    for i in range(n):
        out.record(ms, error=i < errors)
    return out


def evaluate(name: str, stats: WindowStats, threshold: float, **kw: object) -> CheckResult:
    """The registered check ``name`` on ``stats`` (``min_requests`` 20)."""
    spec = CheckSpec(name=name, threshold=threshold, **kw)  # type: ignore[arg-type]
    return get_check(name).evaluate(stats, spec, 20)


def detector_spec(**kw: object) -> dict[str, object]:
    """A detector rollout spec (v3, steps 10/50/100, 1 min windows), with ``kw`` on top."""
    return {
        "model": "detector",
        "challenger_version": 3,
        "step_weights": [10, 50, 100],
        "interval": "1m",
        "progress_deadline": "5m",
        **kw,
    }
