"""The FastAPI application: routes grouped by audience, one error mapping, built per replica.

``build_app(services)`` needs no Ray: tests build it with fakes for the Ray parts and call it
through Starlette's test client; the ingress deployment builds it with the real ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from serving.http.admin_routes import admin_routes
from serving.http.errors import install_error_handlers
from serving.http.guard import RequestGuard
from serving.http.inference_routes import inference_routes
from serving.http.observability_routes import observability_routes
from serving.http.services import Services

TITLE = "canaryserve"
DESCRIPTION = "Versioned detection, OCR and action models composed into pipelines on Ray Serve."
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def _no_background(_app: FastAPI) -> AsyncIterator[None]:
    yield


def build_app(services: Services, lifespan: Lifespan | None = None) -> FastAPI:
    """The HTTP API over ``services``; ``lifespan`` starts and stops background work."""
    app = FastAPI(
        title=TITLE, version="0.1.0", description=DESCRIPTION, lifespan=lifespan or _no_background
    )
    install_error_handlers(app)
    app.add_middleware(RequestGuard, allowed_hosts=services.config.ingress.allowed_hosts)
    app.include_router(observability_routes(services))
    app.include_router(inference_routes(services))
    app.include_router(admin_routes(services))
    return app
