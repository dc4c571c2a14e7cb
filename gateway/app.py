"""The ASGI application: the operator console and the runtime API in one process; any number
of processes behind one address behave as one (all state is in Redis)."""

from __future__ import annotations

from importlib.metadata import version

from fastapi import FastAPI

from ..broker import Client
from .errors import BodyLimit, install_error_handlers
from .routers import ROUTERS
from .settings import GatewaySettings
from .state import Gateway
from .streaming import StreamSettings


def create_app(settings: GatewaySettings | None = None, client: Client | None = None) -> FastAPI:
    settings = settings or GatewaySettings.from_env()
    gw = Gateway.from_settings(settings, client)
    StreamSettings.from_env()  # a bad LEASEGATE_SSE_* refuses the start, not each stream
    app = FastAPI(title="leasegate", version=version("leasegate"), openapi_url="/openapi.json",
                  docs_url="/docs", redoc_url=None,
                  description="Runs own their results: the runtime API and the dead-letter "
                              "console of a leasegate deployment.")
    app.state.gateway = gw
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app
