"""The HTTP API: FastAPI on Ray Serve, routes grouped by who calls them.

- ``app``: ``build_app(services)``, the FastAPI app (no Ray needed to build or test it).
- ``services``: what the routes are handed (data plane, gate, actor links, registry).
- ``inference_routes``: applications: pipelines, one model, what is served.
- ``admin_routes``: ML engineers and admins: rollouts, API keys, model registration.
- ``observability_routes``: on-call: health, readiness, metrics, drift, audit.
- ``gate``: per request: caller and access, then answer, metrics and audit record.
- ``errors``: the one exception -> JSON table (looked up along the MRO), installed once.
- ``bodies``: request bodies (multipart, JSON base64, raw) and their OpenAPI schemas.
- ``media``: decoding and size checks of uploaded images and clips.
- ``ingress``: the Serve deployment: Ray handles and actor links, background loops.

``ingress`` is not imported here, so the app and its routes load without Ray Serve starting.
"""

from serving.http.app import build_app
from serving.http.errors import ErrorResponse, error_response, install_error_handlers
from serving.http.gate import Gate
from serving.http.services import ActorCalls, Services

__all__ = [
    "ActorCalls",
    "ErrorResponse",
    "Gate",
    "Services",
    "build_app",
    "error_response",
    "install_error_handlers",
]
