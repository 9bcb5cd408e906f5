"""The ``runq ui`` application: one Starlette app over one Broker (no second store).

Pages (``pages.py``), the JSON API (``api.py``), live events (``live.py``), static files
(the hand-written script and style in ``ui/static``: nothing is fetched from elsewhere),
``/healthz`` for probes and ``/metrics`` (the queue gauges, read at scrape time).
The guard (``security.py``) runs before every route.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runq.broker import Broker, RunqError

from . import api, pages
from .live import EventHub
from .render import UNAVAILABLE, error_reply, one_line
from .security import SAFE_METHODS, Guard, Refused

log = logging.getLogger("runq.ui")

STATIC = Path(__file__).resolve().parent / "static"


class GuardMiddleware:
    """Host check on every request; the write check on every unsafe method (the login
    form checks its own origin and the token it is given). Plain ASGI, so the event
    streams pass through untouched; it stamps each response with the server's time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        guard: Guard = request.app.state.guard
        try:
            guard.check_host(request)
            if request.method not in SAFE_METHODS and request.url.path not in ("/login", "/logout"):
                guard.check_write(request)
        except Refused as error:
            await error_reply(request, error)(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                # The server's own time (bench/ui.py reads it; browsers show it in devtools).
                spent = (time.perf_counter() - started) * 1000
                MutableHeaders(scope=message).append("Server-Timing", f"app;dur={spent:.2f}")
            await send(message)

        await self.app(scope, receive, timed)


async def healthz(request: Request) -> Response:
    """200 while Redis answers (the probes' question), else 503 (the reason, which names
    the Redis URL, goes to the log only)."""
    broker: Broker = request.app.state.broker
    try:
        await run_in_threadpool(broker.server_time)
    except RunqError as error:
        log.warning("runq ui: /healthz: %s", one_line(error))
        return JSONResponse({"status": "unavailable", "error": UNAVAILABLE}, status_code=503)
    return JSONResponse({"status": "ok"})


def metrics_route(broker: Broker) -> Route | None:
    """``/metrics`` with the queue gauges, when runq.control.queue_metrics exists."""
    try:
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        from runq.control.queue_metrics import QueueCollector
    except ImportError:
        return None
    registry = CollectorRegistry()
    registry.register(QueueCollector(broker))

    async def metrics(request: Request) -> Response:
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", metrics)


def create_app(broker: Broker, guard: Guard) -> Starlette:
    """The application; the event subscription starts and stops with it."""
    hub = EventHub(broker)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub.start()
        try:
            yield
        finally:
            hub.stop()

    async def on_error(request: Request, error: Exception) -> Response:
        return error_reply(request, error)

    routes: list[Any] = [
        Route("/healthz", healthz),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        *api.routes(),
        *pages.routes(),
    ]
    metrics = metrics_route(broker)
    if metrics is not None:
        routes.append(metrics)
    app = Starlette(
        routes=routes,
        middleware=[Middleware(GuardMiddleware)],
        exception_handlers={RunqError: on_error, Refused: on_error, ValueError: on_error},
        lifespan=lifespan,
    )
    app.state.broker, app.state.guard, app.state.hub = broker, guard, hub
    return app
