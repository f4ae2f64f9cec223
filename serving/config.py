"""The one config file: models and their versions, resources, batching, limits and pipelines.

Validated with pydantic (``extra="forbid"``, frozen); every error quotes the bad value and where
it is (``pipelines.clip.nodes[2].inputs``), because the person reading it is editing YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from deployments.runtime import RuntimeSpec
from serving.access import AuthPolicy, is_loopback
from serving.audit import AuditSpec
from serving.errors import ConfigError, validation_lines
from serving.pipelines.spec import PipelineSpec, check_pipeline
from serving.schema import Strict

DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")


class AutoscalingSpec(Strict):
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    initial_replicas: int | None = Field(default=None, ge=0)
    target_ongoing_requests: float = Field(default=2.0, gt=0)
    upscale_delay_s: float = Field(default=2.0, ge=0)
    downscale_delay_s: float = Field(default=30.0, ge=0)
    metrics_interval_s: float = Field(default=1.0, gt=0)
    look_back_period_s: float = Field(default=3.0, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) < min_replicas ({self.min_replicas})"
            )
        return self


class DeploymentSpec(Strict):
    """Ray Serve resources of one model version's replicas."""

    num_cpus: float = Field(default=0.25, ge=0, description="Fractional CPUs are allowed.")
    num_gpus: float = Field(default=0.0, ge=0, description="Fractional GPUs are allowed.")
    memory_mb: int | None = Field(default=None, gt=0)
    num_replicas: int = Field(default=1, ge=1)
    autoscaling: AutoscalingSpec | None = None
    max_ongoing_requests: int = Field(default=16, ge=1)
    max_queued_requests: int = Field(default=-1, ge=-1, description="-1 = unbounded")

    def ray_options(self) -> dict[str, Any]:
        actor: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.memory_mb:
            actor["memory"] = self.memory_mb * 1024 * 1024
        opts: dict[str, Any] = {
            "ray_actor_options": actor,
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
        }
        if self.autoscaling is not None:
            opts["autoscaling_config"] = self.autoscaling.model_dump(exclude_none=True)
        else:
            opts["num_replicas"] = self.num_replicas
        return opts


class BatchingSpec(Strict):
    max_batch_size: int = Field(default=8, ge=1, le=256)
    batch_wait_timeout_s: float = Field(default=0.005, ge=0, le=5)
    max_concurrent_batches: int = Field(
        default=1,
        ge=1,
        le=16,
        description=(
            "Batches a replica runs at once. Two on one multi-threaded CPU session keep every "
            "core busy under load (each run's parallel sections leave cores idle), while a "
            "lone request still gets all the session's threads."
        ),
    )


class ModelSpec(Strict):
    """A registered model and which of its versions to serve (each gets its own deployment)."""

    versions: list[str] = Field(
        default_factory=lambda: ["champion"],
        description="Aliases ('champion', 'challenger') or version numbers ('2').",
        min_length=1,
    )
    deployment: DeploymentSpec = Field(default_factory=DeploymentSpec)
    batching: BatchingSpec = Field(default_factory=BatchingSpec)
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    task: Literal["detection", "action", "ocr"]

    @model_validator(mode="after")
    def _refs(self) -> ModelSpec:
        for ref in self.versions:
            if not (ref.isdigit() or ref.isidentifier()):
                raise ValueError(f"version {ref!r} is neither a number nor an alias name")
        return self


class LimitsSpec(Strict):
    """What one upload may cost. A route's body is capped while it streams in (its encoded
    payload's limit, times 4/3 for base64, plus 64 KiB of framing), whatever Content-Length
    says or whether it is chunked."""

    max_image_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    max_video_bytes: int = Field(
        default=100 * 1024 * 1024, gt=0, description="A video file, or a clip's frames together."
    )
    max_frames: int = Field(default=300, gt=0)
    max_frame_side: int = Field(default=1280, gt=0, description="Larger frames are downscaled.")
    max_video_decode_s: float = Field(
        default=60.0,
        gt=0,
        description="A video that takes longer to decode is refused (413), however few its "
        "frames: a codec can be made to work hard on little data.",
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A body that has not fully arrived in this time is refused (408 "
        "body_timeout). It is read before the request takes an admission slot, so slow "
        "uploads cannot hold the slots of everyone else.",
    )


class IngressSpec(Strict):
    num_cpus: float = Field(default=0.1, ge=0)
    num_replicas: int = Field(default=1, ge=1)
    max_ongoing_requests: int = Field(default=64, ge=1)
    max_in_flight: int = Field(
        default=32,
        ge=1,
        description="Inference requests one ingress replica admits at once; more get 503 with "
        "Retry-After (admission control here, not in Ray's proxy, so callers get our body).",
    )
    retry_after_s: float = Field(default=1.0, gt=0, le=60)
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1"],
        min_length=1,
        description="Host header names the HTTP API answers to (a DNS-rebinding page sends its "
        "own); '*' answers to any, for a cluster behind its own ingress. Others get 400 "
        "invalid_host.",
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="Timeout of /v1/models/{name}:predict (pipelines: own)."
    )

    @model_validator(mode="after")
    def _admission_below_serve(self) -> IngressSpec:
        # Serve must let the request reach the replica for our 503 to be the answer.
        if self.max_in_flight >= self.max_ongoing_requests:
            raise ValueError(
                f"max_in_flight ({self.max_in_flight}) must be below max_ongoing_requests "
                f"({self.max_ongoing_requests}) so that admin and health routes still get in"
            )
        return self


class ServerSpec(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    ray_num_cpus: int | None = Field(default=None, ge=1)
    ray_num_gpus: int | None = Field(default=None, ge=0)
    metrics_export_port: int = Field(default=8080, ge=1, le=65535)
    worker_niceness: int = Field(
        default=0,
        ge=0,
        le=19,
        description=(
            "Niceness of the Ray workers this server starts (replicas, proxy, controllers). "
            "Ray's own default is 15, below its GCS, dashboard and monitors and below every "
            "other process on the box: on 2 cores that halved the serving throughput."
        ),
    )
    ingress_proxy: Literal["auto", "haproxy", "serve"] = Field(
        default="auto",
        description=(
            "What takes HTTP connections: 'haproxy' (Ray Serve's HAProxy front, forwarding "
            "straight to the ingress replica's own HTTP server) or 'serve' (Ray's Python proxy "
            "actor, one more process hop per request). HAProxy hides the client's address "
            "(every caller looks like 127.0.0.1), so 'auto' picks it only when the server is "
            "bound to loopback, where every caller is local anyway."
        ),
    )
    serve_fast_path: bool = Field(
        default=True,
        description=(
            "Ray Serve's throughput settings: calls between deployments over gRPC, request "
            "handling and routing on each replica's main event loop (no thread hop), access "
            "logs buffered and kept in Ray's log files instead of echoed to this console."
        ),
    )
    control_loop_interval_s: float = Field(
        default=0.5,
        gt=0,
        le=5,
        description=(
            "How often Serve's controller runs its loop (Ray's default 0.1 s): deployments, "
            "health and autoscaling decisions follow within it. At 0.1 s the controller alone "
            "held ~4 % of a core on an idle 2-core box."
        ),
    )
    haproxy_stats_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="HAProxy's stats page (all interfaces); unset: a free port at start.",
    )
    haproxy_metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="HAProxy's Prometheus exporter (all interfaces); unset: a free port.",
    )

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def uses_haproxy(self) -> bool:
        if self.ingress_proxy == "auto":
            return self.loopback
        return self.ingress_proxy == "haproxy"


class CanarySpec(Strict):
    """How the serving side follows rollouts (the rollout policy itself is per rollout spec)."""

    reconcile_interval_s: float = Field(
        default=2.0, gt=0, le=60, description="How often the ingress re-reads aliases/weights."
    )
    controller_tick_s: float = Field(default=1.0, gt=0, le=60)
    stats_flush_s: float = Field(default=0.5, gt=0, le=10)
    shadow_max_concurrency: int = Field(
        default=2, ge=0, description="Mirrored requests in flight per ingress replica, at most."
    )
    shadow_timeout_s: float = Field(default=30.0, gt=0)
    challenger_timeout_s: float = Field(
        default=15.0, gt=0, description="A slower challenger call counts as failed; re-run."
    )
    breaker_failures: int = Field(default=5, ge=1)
    breaker_window_s: float = Field(default=30.0, gt=0)
    breaker_cooldown_s: float = Field(default=15.0, gt=0)
    drain_delay_s: float = Field(
        default=6.0, ge=0, description="Wait before deleting a loser (> reconcile interval)."
    )


class DriftSpec(Strict):
    """Drift capture (ingress), windows, scheduled reports and alerts (drift monitor)."""

    enabled: bool = True
    sample_rate: float = Field(default=1.0, ge=0, le=1, description="Share of requests captured.")
    embedding_sample_rate: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="Share of captured requests whose image (a clip's middle frame) is also "
        "embedded for drift (EfficientNet-Lite0, ~10 ms of the capture thread's CPU each, never "
        "on the request path); 0 disables embeddings.",
    )
    capture_queue: int = Field(
        default=256, ge=1, description="Requests waiting for feature extraction per ingress."
    )
    capture_queue_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1,
        description="Bytes of input the queued captures of an ingress may hold (a clip's "
        "decoded frames are megabytes); past it, new captures are dropped and counted.",
    )
    capture_max_age_s: float = Field(
        default=30.0,
        gt=0,
        description="A capture job older than this when the capture thread gets to it is "
        "dropped (counted): a capture that fell behind catches up with the traffic.",
    )
    capture_cpu_share: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Share of one core the capture thread of an ingress replica may spend on "
        "features and embeddings, on average (2 CPU seconds at once): past it, requests are "
        "shed from capture (counted in shed_rows), so a saturated box keeps its CPU for "
        "requests. About 20 ms per photo request: 0.1 measures every request up to ~5 req/s. "
        "1 (the default) never sheds: fewer rows per window cost rollouts their drift evidence.",
    )
    batch_size: int = Field(default=64, ge=1, description="Rows per hand-over to the monitor.")
    flush_interval_s: float = Field(default=1.0, gt=0, le=60)
    send_timeout_s: float = Field(
        default=5.0, gt=0, description="A slower monitor counts the batch as dropped."
    )
    retention_days: float = Field(default=7.0, gt=0)
    monitor_nice: int = Field(
        default=19,
        ge=0,
        le=19,
        description="OS niceness of the drift monitor's process: its reports (seconds of "
        "Evidently CPU) yield to the serving replicas on a shared node.",
    )
    monitor_idle: bool = Field(
        default=False,
        description="Run the drift monitor under SCHED_IDLE (Linux): it only gets CPU the "
        "replicas leave. On a saturated node its reports then all but stop, and so does a "
        "rollout's prediction_drift evidence (the rollout holds its step). Off, it runs at "
        "monitor_nice: on a busy node it gets a small "
        "share (nice 19 against Ray's workers at 15: 15 to 36 CFS weight), never none.",
    )
    max_rows_per_window: int = Field(default=20_000, ge=100)
    window_rows: int = Field(default=500, ge=10, description="Newest rows a report judges.")
    min_rows: int = Field(default=30, ge=5, description="Fewer rows on a side: no verdict.")
    drift_share: float = Field(
        default=0.5, gt=0, le=1, description="Share of drifted features that is 'drift'."
    )
    method: str | None = Field(default=None, description="Evidently stattest for every column.")
    threshold: float | None = Field(default=None, gt=0)
    report_every_rows: int = Field(
        default=1000,
        ge=1,
        description="New live rows of a version that trigger a scheduled report (a report "
        "costs about a CPU-second; drift moves over thousands of requests, not hundreds).",
    )
    report_interval_s: float = Field(default=300.0, gt=0)
    schedule_tick_s: float = Field(default=2.0, gt=0, le=60)
    rollout_eval_interval_s: float = Field(
        default=5.0, ge=0, description="Least time between rollout drift evaluations."
    )
    alert_webhook_url: str | None = Field(
        default=None, pattern=r"^https?://", description="POSTed a JSON alert on champion drift."
    )
    alert_cooldown_s: float = Field(default=3600.0, ge=0)


class BootstrapSpec(Strict):
    """What ``canaryserve bootstrap`` (and ``serve`` on an empty registry) registers."""

    licenses: list[Literal["Apache-2.0", "AGPL-3.0"]] = Field(
        default=["Apache-2.0", "AGPL-3.0"],
        min_length=1,
        description="Weights' licences allowed in the registry. [Apache-2.0] leaves out the "
        "AGPL-3.0 YOLO11n-pose detector, so BlazePose is the champion detector.",
    )


class PlatformConfig(Strict):
    auth: AuthPolicy = Field(default_factory=AuthPolicy)
    audit: AuditSpec = Field(default_factory=AuditSpec)
    server: ServerSpec = Field(default_factory=ServerSpec)
    canary: CanarySpec = Field(default_factory=CanarySpec)
    drift: DriftSpec = Field(default_factory=DriftSpec)
    ingress: IngressSpec = Field(default_factory=IngressSpec)
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    bootstrap: BootstrapSpec = Field(default_factory=BootstrapSpec)
    models: dict[str, ModelSpec]
    pipelines: dict[str, PipelineSpec]

    @model_validator(mode="after")
    def _client_addresses(self) -> PlatformConfig:
        # Behind HAProxy every caller's address is 127.0.0.1: with auth off, a remote caller
        # would pass the loopback-only rule of the operator and admin routes.
        server = self.server
        if server.ingress_proxy == "haproxy" and not server.loopback and not self.auth.enabled:
            raise ValueError(
                f"server.ingress_proxy 'haproxy' with server.host {server.host!r} needs "
                "auth.enabled: true (behind HAProxy every caller looks local); use 'serve' or "
                "'auto' to keep callers' addresses"
            )
        return self

    @model_validator(mode="after")
    def _graphs(self) -> PlatformConfig:
        for pname, pipe in self.pipelines.items():
            check_pipeline(pname, pipe, {m: spec.task for m, spec in self.models.items()})
        return self


def load_config(
    path: Path | str | None = None, overrides: dict[str, Any] | None = None
) -> PlatformConfig:
    """Load and validate a config file (the packaged default when ``path`` is None)."""
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping")
    if overrides:
        raw = _merge(raw, overrides)
    return parse_config(raw, source=str(path))


def parse_config(raw: dict[str, Any], source: str = "<config>") -> PlatformConfig:
    try:
        return PlatformConfig.model_validate(raw)
    except ValidationError as e:
        lines = validation_lines(e)
        raise ConfigError(f"invalid config {source}:\n" + "\n".join(lines)) from None


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out
