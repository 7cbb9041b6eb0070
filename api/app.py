"""The API process: FastAPI on uvicorn, reading the result topics; no business logic of its own.

``its-faust api`` runs it. Any number of API processes can run side by side:
each reads every partition of the topics it serves, so a load balancer may send
a browser to any of them, and an SSE position from one is valid on another.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api import routes_cameras, routes_feeds, routes_status
from api.routes_status import Metrics
from api.service import Hub

STATIC = Path(__file__).parent / "static"


def create_app(settings, bootstrap: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.hub = await Hub(bootstrap, settings).start()
        try:
            yield
        finally:
            await app.state.hub.stop()

    app = FastAPI(
        title="ITS Faust API",
        version="1",
        summary="Live traffic analytics: cameras, counts, alerts and tracks, as REST and server-sent events.",
        lifespan=lifespan,
    )
    app.state.metrics = Metrics()
    app.include_router(routes_cameras.router)
    app.include_router(routes_feeds.router)
    app.include_router(routes_status.router)
    app.mount("/", StaticFiles(directory=STATIC, html=True), name="dashboard")
    return app
