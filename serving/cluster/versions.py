"""Model version apps: deploy, retire and list them, and the one place a binding is built.

Each served (model, version) is its own Serve *application* named ``<model>-v<version>``
holding one deployment of the same name, so a challenger can be deployed, and a loser drained,
without touching the ingress or the champion. :class:`VersionApps` is the interface the
rollout controller and the ingress use; :class:`LocalVersionApps` is the imperative adapter
(``serve.run`` / ``serve.delete``). A declarative adapter (KubeRay ``serveConfigV2``) would
implement the same three methods.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from deployments.base import ModelBinding, deployment_name
from model_registry.settings import RegistryRef
from serving.config import PlatformConfig

_VERSION_APP = re.compile(r"^(?P<model>[a-z][a-z0-9_-]*)-v(?P<version>\d+)$")


def binding(
    config: PlatformConfig, registry: RegistryRef, model: str, version: int
) -> ModelBinding:
    """What one version's replicas are told: which version, where the registry is, how to
    batch and which runtime to use."""
    spec = config.models[model]
    return ModelBinding(
        name=model,
        version=version,
        task=spec.task,
        tracking_uri=registry.tracking_uri,
        data_dir=registry.data_dir,
        max_batch_size=spec.batching.max_batch_size,
        batch_wait_timeout_s=spec.batching.batch_wait_timeout_s,
        max_concurrent_batches=spec.batching.max_concurrent_batches,
        runtime=spec.runtime,
    )


def version_app(config: PlatformConfig, bound: ModelBinding) -> Any:
    """One model version as its own Serve application (deployable and removable on its own)."""
    from deployments.action import ActionClassifier
    from deployments.detection import Detector
    from deployments.ocr import OCR

    classes: dict[str, Any] = {"detection": Detector, "ocr": OCR, "action": ActionClassifier}
    from deployments.images import decoder_env

    spec = config.models[bound.name].deployment
    options = spec.ray_options()
    options["ray_actor_options"]["runtime_env"] = {
        "env_vars": decoder_env(config.limits.max_image_pixels)
    }
    return classes[bound.task].options(name=bound.deployment_name, **options).bind(bound)


class VersionApps(Protocol):
    def deploy(self, bound: ModelBinding) -> None:
        """Deploy one version; returns once its replicas are running."""

    def retire(self, model: str, version: int) -> None:
        """Drain and delete a version (in-flight requests finish first)."""

    def running(self) -> dict[str, list[int]]:
        """Model -> versions whose application is running, sorted."""


class LocalVersionApps:
    """Version apps driven with ``serve.run`` on the cluster this process is connected to."""

    def __init__(self, config: PlatformConfig) -> None:
        self._config = config

    def deploy(self, bound: ModelBinding) -> None:
        from ray import serve

        app = version_app(self._config, bound)
        serve.run(app, name=bound.deployment_name, route_prefix=None)

    def retire(self, model: str, version: int) -> None:
        from ray import serve

        serve.delete(deployment_name(model, version))

    def running(self) -> dict[str, list[int]]:
        from ray import serve

        return running_from_status(serve.status().applications)


def running_from_status(applications: dict[str, Any]) -> dict[str, list[int]]:
    """Model versions whose application is RUNNING, from Serve's application statuses."""
    out: dict[str, list[int]] = {}
    for app_name, app in applications.items():
        match = _VERSION_APP.match(app_name)
        if match and str(app.status) in ("RUNNING", "ApplicationStatus.RUNNING"):
            out.setdefault(match["model"], []).append(int(match["version"]))
    return {m: sorted(v) for m, v in out.items()}
