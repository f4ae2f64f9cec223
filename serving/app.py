"""Assemble the Serve application from the config and the registry, and run it.

Each served (model, version) is its own Serve *application* named ``<model>-v<version>`` holding
one deployment of the same name, so a challenger can be deployed, and a loser drained, without
touching the ingress or the champion. The ingress application (``canaryserve``) finds them by
name. Aliases in the config (``champion``) are resolved to version numbers at start-up; after
that the ingress reconciles with the registry's aliases every few seconds.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from deployments.base import ModelBinding, deployment_name
from model_registry.settings import data_dir, tracking_uri
from serving.config import PlatformConfig
from serving.errors import ConfigError, UnknownModelVersion
from serving.versions import VersionTable

log = logging.getLogger("canaryserve.app")
APP_NAME = "canaryserve"
_VERSION_APP = re.compile(r"^(?P<model>[a-z][a-z0-9_-]*)-v(?P<version>\d+)$")


@dataclass(frozen=True)
class Plan:
    bindings: list[ModelBinding]
    table: VersionTable
    registry: dict[str, str]


def plan_deployments(
    config: PlatformConfig,
    store: Any,
    *,
    registry_uri: str | None = None,
    local_dir: str | None = None,
) -> Plan:
    """Resolve every configured version ref against the registry (no Ray needed)."""
    uri = registry_uri or tracking_uri()
    local = local_dir or str(data_dir())
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
        for number in versions:
            bindings.append(
                ModelBinding(
                    name=name,
                    version=number,
                    task=spec.task,
                    tracking_uri=uri,
                    data_dir=local,
                    max_batch_size=spec.batching.max_batch_size,
                    batch_wait_timeout_s=spec.batching.batch_wait_timeout_s,
                    runtime=spec.runtime,
                )
            )
    return Plan(
        bindings,
        VersionTable(served=served, default=default, aliases=aliases),
        {"tracking_uri": uri, "data_dir": local},
    )


def version_app(config: PlatformConfig, binding: ModelBinding) -> Any:
    """One model version as its own Serve application (deployable and removable on its own)."""
    from deployments.action import ActionClassifier
    from deployments.detection import Detector
    from deployments.ocr import OCR

    classes = {"detection": Detector, "ocr": OCR, "action": ActionClassifier}
    spec = config.models[binding.name].deployment
    return (
        classes[binding.task]
        .options(name=binding.deployment_name, **spec.ray_options())
        .bind(binding)
    )


def deploy_version(config: PlatformConfig, binding: ModelBinding) -> None:
    """serve.run one model version; returns once its replicas are running."""
    from ray import serve

    serve.run(version_app(config, binding), name=binding.deployment_name, route_prefix=None)


def retire_version(model: str, version: int) -> None:
    """Drain and delete a model version's application (in-flight requests finish first)."""
    from ray import serve

    serve.delete(deployment_name(model, version))


def running_versions() -> dict[str, list[int]]:
    """Model versions whose application is RUNNING, from Serve's own status."""
    from ray import serve

    out: dict[str, list[int]] = {}
    for app_name, app in serve.status().applications.items():
        match = _VERSION_APP.match(app_name)
        if match and str(app.status) in ("RUNNING", "ApplicationStatus.RUNNING"):
            out.setdefault(match["model"], []).append(int(match["version"]))
    return {m: sorted(v) for m, v in out.items()}


def ingress_app(config: PlatformConfig, plan: Plan) -> Any:
    from serving.ingress import Ingress

    return Ingress.options(
        num_replicas=config.ingress.num_replicas,
        max_ongoing_requests=config.ingress.max_ongoing_requests,
        ray_actor_options={"num_cpus": config.ingress.num_cpus},
    ).bind(config, plan.table, plan.registry)


def deploy(
    config: PlatformConfig,
    store: Any,
    *,
    route_prefix: str = "/",
    name: str = APP_NAME,
    with_controller: bool = True,
    **plan_kw: Any,
) -> Plan:
    """Deploy every planned model version, then the ingress (Ray and Serve must be started)."""
    from ray import serve

    plan = plan_deployments(config, store, **plan_kw)
    for binding in plan.bindings:
        deploy_version(config, binding)
    if with_controller:
        from serving.controller import ensure_controller

        ensure_controller(config, plan.registry)
    if config.drift.enabled:
        from drift.actor import ensure_monitor

        ensure_monitor(config, plan.registry)
    serve.run(ingress_app(config, plan), name=name, route_prefix=route_prefix)
    return plan


def app_builder(args: dict[str, Any]) -> Any:
    """Entry point for Serve config files (KubeRay ``serveConfigV2``): the ingress application.

    ``args``: ``config`` (path of the platform YAML; the packaged default if absent). The
    registry is whatever ``MLFLOW_TRACKING_URI`` / ``CANARYSERVE_DATA_DIR`` say in the pod.
    """
    from model_registry.mlflow_store import MlflowModelStore
    from serving.config import load_config

    config = load_config(args.get("config"))
    plan = plan_deployments(config, MlflowModelStore())
    if config.drift.enabled:
        from drift.actor import ensure_monitor

        ensure_monitor(config, plan.registry)
    return ingress_app(config, plan)


def version_builder(args: dict[str, Any]) -> Any:
    """Entry point for one model version's application (``args``: config, model, version)."""
    from model_registry.mlflow_store import MlflowModelStore
    from serving.config import load_config

    config = load_config(args.get("config"))
    plan = plan_deployments(config, MlflowModelStore())
    wanted = (args["model"], int(args["version"]))
    for binding in plan.bindings:
        if (binding.name, binding.version) == wanted:
            return version_app(config, binding)
    raise ConfigError(f"{wanted[0]} v{wanted[1]} is not among the configured versions")
