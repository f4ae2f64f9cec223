"""App assembly: resolve the config against the registry, register the checks, deploy.

Each served (model, version) is its own Serve application (``serving.cluster.versions``); the
ingress application (``canaryserve``) finds them by name. Aliases in the config
(``champion``) are resolved to version numbers at start-up; after that the ingress reconciles
with the registry's aliases every few seconds.

This is the one place that knows every part: it hands the rollout controller the checks that
live outside the rollouts package (``prediction_drift``, from ``drift``) and the drift source
they read, so that no lower package registers anything as an import side effect.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ray import serve

from deployments.base import ModelBinding
from deployments.images import decoder_env
from drift.actor import ensure_monitor, rollout_drift
from drift.check import PredictionDriftCheck
from model_registry.mlflow_layout import TAG_LAYOUT
from model_registry.mlflow_store import MlflowModelStore
from model_registry.settings import RegistryRef, data_dir, tracking_uri
from model_registry.store import ModelStore
from serving.canary.routes import VersionTable
from serving.cluster.versions import LocalVersionApps, binding, version_app
from serving.config import PlatformConfig, load_config
from serving.errors import ConfigError, UnknownModelVersion
from serving.http.ingress import Ingress
from serving.pipelines.spec import check_keypoint_layouts
from serving.rollouts.checks import Check, register_check
from serving.rollouts.controller.actor import ensure_controller
from serving.rollouts.offline import OfflineAccuracyCheck

log = logging.getLogger("canaryserve.app")
APP_NAME = "canaryserve"


@dataclass(frozen=True)
class Plan:
    bindings: list[ModelBinding]
    table: VersionTable
    registry: RegistryRef


def plugin_checks() -> list[Check]:
    """Rollout checks that live outside ``serving.rollouts``."""
    return [PredictionDriftCheck(), OfflineAccuracyCheck()]


def register_checks() -> None:
    """Make the plug-in checks known in this process (the controller does it in its own)."""
    for check in plugin_checks():
        register_check(check, replace=True)


def plan_deployments(
    config: PlatformConfig,
    store: ModelStore,
    *,
    registry_uri: str | None = None,
    local_dir: str | None = None,
) -> Plan:
    """Resolve every configured version ref against the registry (no Ray needed)."""
    registry = RegistryRef(registry_uri or tracking_uri(), local_dir or str(data_dir()))
    bindings: list[ModelBinding] = []
    served: dict[str, list[int]] = {}
    default: dict[str, int] = {}
    aliases: dict[str, dict[str, int]] = {}
    for name, spec in config.models.items():
        try:
            aliases[name] = dict(store.aliases(name))
        except Exception as e:
            raise ConfigError(f"model {name!r} from the config is not in the registry: {e}") from e
        versions: list[int] = []
        for ref in spec.versions:
            if ref.isdigit():
                number = int(ref)
                store.get(f"{name}/{number}")  # raises UnknownModelVersion if absent
            elif ref in aliases[name]:
                number = aliases[name][ref]
            else:
                raise UnknownModelVersion(
                    f"config asks for {name}@{ref}, but {name!r} has aliases {aliases[name]}"
                )
            if number not in versions:
                versions.append(number)
        served[name] = versions
        champion = aliases[name].get("champion")
        default[name] = champion if champion in versions else versions[0]
        bindings += [binding(config, registry, name, number) for number in versions]
    check_layouts(config, store, {name: [v] for name, v in default.items()})
    return Plan(bindings, VersionTable(served=served, default=default, aliases=aliases), registry)


def check_layouts(config: PlatformConfig, store: ModelStore, served: dict[str, list[int]]) -> None:
    """The pipelines' detector/action pairs agree on keypoints (``check_keypoint_layouts``).

    Judged for the versions that answer by default (the champions); a rollout's challenger is
    judged against them when it starts (``serving.rollouts.pairing``). A caller who pins another
    pair gets what that pair gives: an action version without its keypoints classifies from the
    box alone."""
    layouts = {
        name: {v: store.get(f"{name}/{v}").tags.get(TAG_LAYOUT) for v in versions}
        for name, versions in served.items()
    }
    for pname, pipe in config.pipelines.items():
        try:
            check_keypoint_layouts(pname, pipe, layouts)
        except ValueError as e:
            raise ConfigError(str(e)) from None


def ingress_app(config: PlatformConfig, plan: Plan) -> Any:
    return Ingress.options(  # type: ignore[attr-defined]
        num_replicas=config.ingress.num_replicas,
        max_ongoing_requests=config.ingress.max_ongoing_requests,
        ray_actor_options={
            "num_cpus": config.ingress.num_cpus,
            "runtime_env": {"env_vars": decoder_env(config.limits.max_image_pixels)},
        },
    ).bind(config, plan.table, plan.registry)


def start_singletons(config: PlatformConfig, registry: RegistryRef, *, controller: bool) -> None:
    """The rollout controller (with the plug-in checks) and, when drift is on, the monitor."""
    if controller:
        ensure_controller(config, registry, checks=plugin_checks(), drift=rollout_drift)
    if config.drift.enabled:
        ensure_monitor(config, registry)


def deploy(
    config: PlatformConfig,
    store: ModelStore,
    *,
    route_prefix: str = "/",
    name: str = APP_NAME,
    with_controller: bool = True,
    **plan_kw: Any,
) -> Plan:
    """Deploy every planned model version, then the ingress (Ray and Serve must be started)."""
    register_checks()
    plan = plan_deployments(config, store, **plan_kw)
    apps = LocalVersionApps(config)
    for bound in plan.bindings:
        apps.deploy(bound)
    start_singletons(config, plan.registry, controller=with_controller)
    serve.run(ingress_app(config, plan), name=name, route_prefix=route_prefix)
    return plan


def app_builder(args: dict[str, Any]) -> Any:
    """Entry point for Serve config files (KubeRay ``serveConfigV2``): the ingress application.

    ``args``: ``config`` (path of the platform YAML; the packaged default if absent). The
    registry is whatever ``MLFLOW_TRACKING_URI`` / ``CANARYSERVE_DATA_DIR`` say in the pod.
    """
    config = load_config(args.get("config"))
    register_checks()
    plan = plan_deployments(config, MlflowModelStore())
    if config.drift.enabled:
        ensure_monitor(config, plan.registry)
    return ingress_app(config, plan)


def version_builder(args: dict[str, Any]) -> Any:
    """Entry point for one model version's application (``args``: config, model, version)."""
    config = load_config(args.get("config"))
    plan = plan_deployments(config, MlflowModelStore())
    wanted = (args["model"], int(args["version"]))
    for bound in plan.bindings:
        if (bound.name, bound.version) == wanted:
            return version_app(config, bound)
    raise ConfigError(f"{wanted[0]} v{wanted[1]} is not among the configured versions")
