"""The ``runq ui`` application: one Starlette app over one Broker (no second store).

Pages (``pages.py``), the JSON API (``api.py``), live events (``live.py``), static files
(the hand-written script and style in ``ui/static``: nothing is fetched from elsewhere),
``/healthz`` (liveness: the process answers) and ``/readyz`` (readiness: Redis answers)
for probes, and ``/metrics`` (the queue gauges, read at scrape time). The access check
(``access.py``, with the rules of ``security.py``) runs before every route.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from runq.broker import Broker, RunqError
from runq.display.queue_metrics import QueueCollector
from runq.display.text import error_line

from . import api, login, pages
from .access import AccessMiddleware, Logins
from .live import EventHub
from .render import UNAVAILABLE, error_reply
from .security import Guard, Refused

log = logging.getLogger("runq.ui")

STATIC = Path(__file__).resolve().parent / "static"


async def healthz(request: Request) -> Response:
    """Liveness: 200 while this process answers, whatever Redis does (the UI rides out a
    Redis outage by itself: restarting it would not help)."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: 200 while Redis answers, else 503 (the reason, which names the Redis
    URL, goes to the log only)."""
    broker: Broker = request.app.state.broker
    try:
        await run_in_threadpool(broker.server_time)
    except RunqError as error:
        log.warning("runq ui: /readyz: %s", error_line(error))
        return JSONResponse({"status": "unavailable", "error": UNAVAILABLE}, status_code=503)
    return JSONResponse({"status": "ok"})


def metrics_route(broker: Broker) -> Route:
    """``/metrics`` with the queue gauges (the ones ``runq exporter`` serves), read at
    scrape time."""
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
        Route("/readyz", readyz),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        *api.routes(),
        *login.routes(),
        *pages.routes(),
    ]
    routes.append(metrics_route(broker))
    app = Starlette(
        routes=routes,
        middleware=[Middleware(AccessMiddleware)],
        exception_handlers={RunqError: on_error, Refused: on_error, ValueError: on_error},
        lifespan=lifespan,
    )
    app.state.broker, app.state.guard, app.state.hub = broker, guard, hub
    app.state.logins = Logins(broker, guard)
    return app
