"""Canary rollouts: the control plane that moves a challenger version to champion, or back.

- ``spec``: what a rollout looks like (steps, pacing, guards, checks), validated.
- ``checks``: what the analysis measures per window, the :class:`Check` interface and the
  explicit check registry (built-ins registered here; plug-ins by app assembly).
- ``window``: what one analysis window measured (``WindowStats``), re-exported by ``checks``.
- ``sequential``: the statistics with known error rates (SPRT, confidence sequence, quantile
  test) and the :class:`Evidence` a sequential check accumulates over a rollout.
- ``ledger``: how the state machine keeps that evidence in the rollout, window by window.
- ``evidence``: the typed drift evidence the ``prediction_drift`` plug-in judges, and the
  :data:`DriftSource` the controller gets it from.
- ``machine``: the pure state machine, ``(rollout, stats, now) -> (rollout, events, action)``.
- ``stats``: the ingress's records cut into analysis windows.
- ``store``: rollouts and their event log in SQLite.
- ``manager``: :class:`RolloutManager`, the loop and the commands, with its collaborators
  (store, registry, :class:`Deployer`, clock, drift source) injected; no Ray.
- ``actor``: the Ray side: the controller actor, its deployer on version apps, and
  :func:`ensure_controller` / :func:`get_controller`.

Arrows point down only: this package imports ``serving.canary``, ``serving.cluster``, the
config, errors, metrics, ``model_registry`` and ``deployments``; never ``drift``, the HTTP
layer, the data plane, app assembly or the CLI.
"""

from serving.rollouts.checks import (
    ArmStats,
    Check,
    CheckResult,
    ShadowStats,
    WindowStats,
    get_check,
    register_check,
)
from serving.rollouts.controller.actor import (
    CONTROLLER_NAME,
    RolloutController,
    VersionDeployer,
    ensure_controller,
    get_controller,
)
from serving.rollouts.controller.store import RolloutStore
from serving.rollouts.evidence import (
    PREDICTION_DRIFT,
    DriftComparison,
    DriftEvidence,
    DriftSource,
)
from serving.rollouts.machine import Action, Event, Rollout
from serving.rollouts.manager import ACTIVE_ROUTE_STATES, Deployer, RolloutManager
from serving.rollouts.spec import CheckSpec, RolloutSpec, parse_duration, parse_rollout_spec
from serving.rollouts.stats import RolloutStats

__all__ = [
    "ACTIVE_ROUTE_STATES",
    "CONTROLLER_NAME",
    "PREDICTION_DRIFT",
    "Action",
    "ArmStats",
    "Check",
    "CheckResult",
    "CheckSpec",
    "Deployer",
    "DriftComparison",
    "DriftEvidence",
    "DriftSource",
    "Event",
    "Rollout",
    "RolloutController",
    "RolloutManager",
    "RolloutSpec",
    "RolloutStats",
    "RolloutStore",
    "ShadowStats",
    "VersionDeployer",
    "WindowStats",
    "ensure_controller",
    "get_check",
    "get_controller",
    "parse_duration",
    "parse_rollout_spec",
    "register_check",
]
