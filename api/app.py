"""The API process: FastAPI on uvicorn, reading the result topics; no business logic of its own.

``its-faust api`` runs it. Any number of API processes can run side by side:
each reads every partition of the topics it serves, so a load balancer may send
a browser to any of them, and an SSE position from one is valid on another.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.routing import Match, Mount

from api import routes_cameras, routes_feeds, routes_status
from api.body_limit import BodyLimit
from api.errors import validation_failed
from api.metrics import Metrics
from api.hub import Hub
from api.readiness import SystemHealth

STATIC = Path(__file__).parent / "static"
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def create_app(settings, bootstrap: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.hub = await Hub(bootstrap, settings).start()
        app.state.metrics.watch(app.state.hub)
        app.state.health = SystemHealth(app.state.hub, app.state.metrics)
        try:
            yield
        finally:
            app.state.health.stop()  # a read of the lag a scrape left running
            await app.state.hub.stop()

    # FastAPI's /docs and /redoc load their scripts from a CDN: blank pages on a network without the internet.
    app = FastAPIOffline(
        static_url="/api/docs-assets",
        title="ITS Faust API",
        version="1",
        summary="Live traffic analytics: cameras, counts, alerts and tracks, as REST and server-sent events.",
        lifespan=lifespan,
    )
    app.state.metrics = Metrics()
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes)  # inside CORS: a 413 carries its headers
    if settings.api.cors_origins:  # a city's own web app on another origin calling this API from a browser
        app.add_middleware(CORSMiddleware, allow_origins=settings.api.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    app.add_exception_handler(RequestValidationError, validation_failed)
    app.include_router(routes_cameras.router)
    app.include_router(routes_feeds.router)
    app.include_router(routes_status.router)
    app.mount("/", Dashboard(directory=STATIC, html=True), name="dashboard")
    return app


class Dashboard(StaticFiles):
    """The dashboard's files at ``/``; but a request under ``/api/`` that no API route took gets the API's
    answer, not the file server's: a HEAD is answered as its GET would be, headers only (uptime checks
    send HEAD /api/v1/health); otherwise 404 for a path no route has, 405 with the methods the path takes.
    The file server, which every request no route took fell through to, answered HEAD with 404, a POST to
    a GET-only path with 405 "Allow: GET, HEAD", and a POST to no endpoint at all with 405."""

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/api" or path.startswith("/api/")):
            return await super().__call__(scope, receive, _with_headers(send, DASHBOARD_HEADERS))
        takes = [method for method in _METHODS if any(
            route.matches({**scope, "method": method})[0] == Match.FULL
            for route in scope["app"].routes if not (isinstance(route, Mount) and route.app is self))]
        if scope["method"] == "HEAD" and "GET" in takes:
            return await _headers_of_get(scope, receive, send)
        if takes:
            response = JSONResponse(status_code=405, headers={"Allow": ", ".join(takes)}, content={
                "detail": f"{scope['method']} {path}: not allowed; it takes {', '.join(takes)}"})
        else:
            response = JSONResponse(status_code=404, content={"detail": f"no API endpoint {path} (the endpoints: /docs)"})
        await response(scope, receive, send)


# The dashboard's files: revalidated at every load (an upgraded API with a browser's cached app.js of before
# had broken the page until a hard reload), and a page that runs only its own script, in no other site's frame.
DASHBOARD_HEADERS = [
    (b"cache-control", b"no-cache"),
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                                 b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
]


def _with_headers(send, headers: list[tuple[bytes, bytes]]):
    async def sending(message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *headers]}
        await send(message)
    return sending


class _HeadersSent(Exception):
    """Raised out of a GET answered for a HEAD once its headers are sent: a feed would stream on for ever."""


async def _headers_of_get(scope, receive, send) -> None:
    async def headers_only(message) -> None:
        if message["type"] == "http.response.start":
            return await send(message)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        raise _HeadersSent

    try:  # the router, not the app: its middleware has this request already (CORS doubled its Vary header)
        await scope["app"].router({**scope, "method": "GET"}, receive, headers_only)
    except _HeadersSent:
        pass
    except BaseExceptionGroup as group:  # a streaming response sends from a task group
        if group.split(_HeadersSent)[1] is not None:
            raise
