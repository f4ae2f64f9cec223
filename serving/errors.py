"""One error tree for the whole platform.

Every error carries a class-level HTTP ``status_code`` and a stable ``code`` string; the ingress
maps them to ``{"error": {"code": ..., "message": ...}}`` in one table-driven handler.

Warning: the message of a 4xx error reaches clients. Put the offending *value* in it (that is
what a caller needs to fix the request), never a stack trace or internal path. 5xx responses
never echo the message: they get a generic text and the request id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pydantic import ValidationError


class CanaryError(Exception):
    """Base of every error the platform raises on purpose."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


# --- client errors -------------------------------------------------------------------------


class BadRequest(CanaryError):
    status_code = 400
    code = "bad_request"


class EmptyBody(BadRequest):
    code = "empty_body"


class UndecodableImage(BadRequest):
    code = "undecodable_image"


class UndecodableVideo(BadRequest):
    code = "undecodable_video"


class InvalidBase64(BadRequest):
    code = "invalid_base64"


class InvalidInput(CanaryError):
    status_code = 422
    code = "invalid_input"


class UnsupportedMediaType(CanaryError):
    status_code = 415
    code = "unsupported_media_type"


class PayloadTooLarge(CanaryError):
    status_code = 413
    code = "payload_too_large"


class ImageTooLarge(PayloadTooLarge):
    code = "image_too_large"


class TooManyFrames(PayloadTooLarge):
    code = "too_many_frames"


class NotFound(CanaryError):
    status_code = 404
    code = "not_found"


class UnknownPipeline(NotFound):
    code = "unknown_pipeline"


class UnknownModel(NotFound):
    code = "unknown_model"


class UnknownModelVersion(NotFound):
    code = "unknown_model_version"


class VersionNotServed(CanaryError):
    """The version exists in the registry but no deployment serves it."""

    status_code = 409
    code = "version_not_served"


# --- registry / configuration errors (raised at start-up or by admin commands) -------------


class ConfigError(CanaryError):
    status_code = 500
    code = "config_error"


class ManifestError(CanaryError):
    status_code = 422
    code = "invalid_manifest"


class ModelValidationError(CanaryError):
    """A model directory failed the checks that run before registration."""

    status_code = 422
    code = "model_validation_failed"


class ArtifactIntegrityError(CanaryError):
    """A downloaded artifact's sha256 does not match the one recorded at registration."""

    status_code = 500
    code = "artifact_integrity_error"


class RegistryError(CanaryError):
    status_code = 503
    code = "registry_unavailable"


# --- server-side failures ------------------------------------------------------------------


class ModelFailure(CanaryError):
    status_code = 502
    code = "model_failure"


class ServiceUnavailable(CanaryError):
    status_code = 503
    code = "service_unavailable"


class MetricsUnavailable(ServiceUnavailable):
    """``/metrics``: the cluster scrape did not finish in time (503, retry)."""

    code = "metrics_unavailable"


# --- rollouts ------------------------------------------------------------------------------


class UnknownRollout(NotFound):
    code = "unknown_rollout"


class RolloutConflict(CanaryError):
    """A second rollout on a model that already has an active one, or a challenger in use."""

    status_code = 409
    code = "rollout_conflict"


class InvalidRolloutTransition(CanaryError):
    """E.g. resuming a rollout that is not paused, or promoting one that already ended."""

    status_code = 409
    code = "invalid_rollout_transition"


class InvalidRolloutSpec(CanaryError):
    status_code = 422
    code = "invalid_rollout_spec"


# --- drift ---------------------------------------------------------------------------------


class UnknownReport(NotFound):
    code = "unknown_drift_report"


class NoReference(CanaryError):
    """A model version has no frozen drift reference to compare against."""

    status_code = 409
    code = "no_drift_reference"


class InvalidBaseline(InvalidInput):
    """A baseline request that cannot be met as asked (bad source, no images in the folder)."""

    code = "invalid_baseline"


class NotEnoughBaselineRows(CanaryError):
    """Too few rows to freeze a baseline from: a reference needs as many as a report does."""

    status_code = 409
    code = "not_enough_baseline_rows"


# --- access control, overload, timeouts, audit ---------------------------------------------


class Unauthenticated(CanaryError):
    """No API key, or one that matches no known key (401)."""

    status_code = 401
    code = "unauthenticated"


class TooManyAuthFailures(CanaryError):
    """A client presented too many invalid keys lately (429, with Retry-After)."""

    status_code = 429
    code = "too_many_auth_failures"

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message, retry_after_s=round(retry_after_s, 1))
        self.retry_after_s = retry_after_s


class Forbidden(CanaryError):
    """A valid key whose role does not allow the route (403)."""

    status_code = 403
    code = "forbidden"


class ChallengerPinForbidden(Forbidden):
    """A pin (``X-Model-Version`` or ``?version=``) to the version a rollout is judging, by a
    caller without the operator role (with auth off: from another host than loopback) (403)."""

    code = "challenger_pin_forbidden"


class InvalidHost(BadRequest):
    """The request's Host is not one the server answers to (DNS-rebinding protection)."""

    code = "invalid_host"


class Overloaded(CanaryError):
    """Admission control refused the request: too many in flight; retry after a moment."""

    status_code = 503
    code = "overloaded"

    def __init__(self, message: str, *, retry_after_s: float = 1.0, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after_s = retry_after_s


class RequestTimeout(CanaryError):
    status_code = 504
    code = "request_timeout"


class BodyTimeout(CanaryError):
    """The request body did not fully arrive within ``limits.body_timeout_s`` (408)."""

    status_code = 408
    code = "body_timeout"


class UnknownAuditRecord(NotFound):
    code = "unknown_audit_record"


def reraise_cause(exc: BaseException) -> None:
    """Ray wraps an actor's exception (RayTaskError); re-raise ours if it is one of ours."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, CanaryError):
        raise cause from None
    if isinstance(exc, CanaryError):
        raise exc


def validation_lines(error: ValidationError) -> list[str]:
    """One ``loc: message (got value)`` line per problem of a pydantic ValidationError.

    Used for every user-written document (platform config, rollout spec, manifest) so the
    person editing it sees where the bad value is and what it was.
    """
    lines = []
    for err in error.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        bad = err.get("input")
        shown = "" if isinstance(bad, dict) or repr(bad) in msg else f" (got {bad!r})"
        lines.append(f"  {loc}: {msg}{shown}")
    return lines
