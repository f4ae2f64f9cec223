"""The controller actor's Ray-free parts: its constructor, its deployer, ensure/get helpers.

The actor class is plain Python until ``ray.remote`` wraps it (in ``ensure_actor``), so its
constructor runs here as it would in the actor's own process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from deployments.base import ModelBinding
from model_registry.settings import RegistryRef
from serving.config import PlatformConfig, load_config
from serving.rollouts import checks
from serving.rollouts.checks import CheckResult, WindowStats, register_check
from serving.rollouts.controller import actor
from serving.rollouts.controller.actor import (
    CONTROLLER_NAME,
    RolloutController,
    VersionDeployer,
    ensure_controller,
    get_controller,
)
from serving.rollouts.controller.store import RolloutStore
from serving.rollouts.machine import start
from serving.rollouts.spec import CheckSpec, parse_rollout_spec


@dataclass
class _Toy:
    name: str = "toy_plugin"
    phases: frozenset[str] = frozenset({"canary"})

    def validate(self, spec: CheckSpec) -> None:
        pass

    def evaluate(self, stats: WindowStats, spec: CheckSpec, min_requests: int) -> CheckResult:
        return CheckResult(self.name, None, None, spec.threshold)


def _no_drift(model: str, champion: int, challenger: int, since: float, rows: int) -> None:
    return None


@pytest.fixture
def config() -> PlatformConfig:
    return load_config()


@pytest.fixture
def registry(tmp_path: Path) -> RegistryRef:
    return RegistryRef(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", data_dir=str(tmp_path))


@pytest.fixture
def builtins_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry with the built-in checks only, as in a fresh controller process."""
    monkeypatch.setattr(checks, "CHECKS", dict(checks.CHECKS))


def _store_a_rollout_using_the_plugin(registry: RegistryRef) -> None:
    """What an earlier controller, which had the plug-in, left in the rollout store."""
    register_check(_Toy())
    raw = {"model": "detector", "challenger_version": 3}
    spec = parse_rollout_spec({**raw, "checks": [{"name": "toy_plugin", "threshold": 1}]})
    RolloutStore(registry.data_path / actor.ROLLOUTS_DB).create(*start(spec, 2, "ro-1", 1.0))
    del checks.CHECKS["toy_plugin"]  # ... and the new process has not registered it yet


@pytest.mark.usefixtures("builtins_only")
def test_plugin_checks_are_registered_before_stored_rollouts_load(
    config: PlatformConfig, registry: RegistryRef
) -> None:
    _store_a_rollout_using_the_plugin(registry)
    with pytest.raises(ValidationError, match="unknown check 'toy_plugin'"):
        RolloutController(config, registry)
    controller = RolloutController(config, registry, [_Toy()], _no_drift)
    assert [r["id"] for r in controller.manager.list()] == ["ro-1"]
    assert controller.manager.drift is _no_drift
    assert controller.target is controller.manager


@pytest.mark.usefixtures("builtins_only")
def test_ensure_controller_hands_the_actor_its_constructor_arguments(
    config: PlatformConfig, registry: RegistryRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[Any, ...]] = []

    def fake_ensure_actor(cls: type, name: str, *args: Any, max_concurrency: int) -> str:
        asked.append((cls, name, args, max_concurrency))
        return "handle"

    monkeypatch.setattr(actor, "ensure_actor", fake_ensure_actor)
    toy = _Toy()
    assert ensure_controller(config, registry, checks=[toy], drift=_no_drift) == "handle"
    cls, name, args, concurrency = asked[0]
    assert (cls, name, concurrency) == (RolloutController, CONTROLLER_NAME, 64)
    assert args == (config, registry, (toy,), _no_drift)
    built = cls(*args)  # what Ray will do in the actor's process
    assert checks.get_check("toy_plugin") is toy and built.manager.drift is _no_drift


def test_get_controller_is_none_without_an_actor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actor, "get_actor", lambda name: None)
    assert get_controller() is None


class FakeApps:
    def __init__(self) -> None:
        self.deployed: list[ModelBinding] = []
        self.retired: list[tuple[str, int]] = []
        self.up: dict[str, list[int]] = {"detector": [1, 2]}
        self.done = threading.Event()

    def deploy(self, bound: ModelBinding) -> None:
        self.deployed.append(bound)
        self.up.setdefault(bound.name, []).append(bound.version)
        self.done.set()

    def retire(self, model: str, version: int) -> None:
        self.retired.append((model, version))

    def running(self) -> dict[str, list[int]]:
        return self.up


def test_the_deployer_deploys_a_binding_of_the_version(
    config: PlatformConfig, registry: RegistryRef
) -> None:
    apps = FakeApps()
    deployer = VersionDeployer(config, registry, apps)
    assert deployer.ready("detector", 2) and not deployer.ready("detector", 3)
    deployer.ensure("detector", 2)  # already running: nothing to do
    deployer.ensure("detector", 3)
    assert apps.done.wait(timeout=30)
    (bound,) = apps.deployed
    assert (bound.name, bound.version, bound.task) == ("detector", 3, "detection")
    assert (bound.tracking_uri, bound.data_dir) == (registry.tracking_uri, registry.data_dir)
    assert deployer.ready("detector", 3)


def test_the_deployer_never_retires_a_version_the_config_pins(
    config: PlatformConfig, registry: RegistryRef
) -> None:
    apps = FakeApps()
    deployer = VersionDeployer(config, registry, apps)
    deployer.retire("detector", 2)  # the default config serves detector v2 by number
    deployer.retire("detector", 3)
    assert apps.retired == [("detector", 3)]
