"""Assemble the Serve application from the config and the registry, and run it.

Each served (model, version) becomes its own deployment named ``<model>-v<version>``; aliases in
the config (``champion``) are resolved to version numbers here, once, so every replica of the
ingress agrees on them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from deployments.base import ModelBinding
from model_registry.settings import data_dir, tracking_uri
from serving.config import PlatformConfig
from serving.errors import ConfigError, UnknownModelVersion
from serving.versions import VersionTable

log = logging.getLogger("canaryserve.app")
APP_NAME = "canaryserve"


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


def build_app(config: PlatformConfig, plan: Plan) -> Any:
    """Bind the deployments of ``plan`` into one Serve application (ingress on top)."""
    from deployments.action import ActionClassifier
    from deployments.detection import Detector
    from deployments.ocr import OCR
    from serving.ingress import Ingress

    classes = {"detection": Detector, "ocr": OCR, "action": ActionClassifier}
    handles: dict[str, dict[int, Any]] = {}
    for b in plan.bindings:
        spec = config.models[b.name].deployment
        bound = classes[b.task].options(name=b.deployment_name, **spec.ray_options()).bind(b)
        handles.setdefault(b.name, {})[b.version] = bound
    return Ingress.options(
        num_replicas=config.ingress.num_replicas,
        max_ongoing_requests=config.ingress.max_ongoing_requests,
        ray_actor_options={"num_cpus": config.ingress.num_cpus},
    ).bind(config, handles, plan.table, plan.registry)


def deploy(
    config: PlatformConfig,
    store: Any,
    *,
    route_prefix: str = "/",
    name: str = APP_NAME,
    **plan_kw: Any,
) -> Plan:
    """serve.run the application (Ray and Serve must already be started)."""
    from ray import serve

    plan = plan_deployments(config, store, **plan_kw)
    serve.run(build_app(config, plan), name=name, route_prefix=route_prefix)
    return plan


def app_builder(args: dict[str, Any]) -> Any:
    """Entry point for Serve config files (KubeRay ``serveConfigV2``, ``serve run``).

    ``args``: ``config`` (path of the platform YAML; the packaged default if absent). The
    registry is whatever ``MLFLOW_TRACKING_URI`` / ``CANARYSERVE_DATA_DIR`` say in the pod.
    """
    from model_registry.mlflow_store import MlflowModelStore
    from serving.config import load_config

    config = load_config(args.get("config"))
    store = MlflowModelStore()
    return build_app(config, plan_deployments(config, store))
