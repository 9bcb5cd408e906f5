"""Rendering: the Jinja2 environment (autoescape on everything), JSON replies, and the
one mapping from runq's exceptions to HTTP statuses.

Every value reaches the page through Jinja2's autoescape (never ``|safe``), and the
Content-Security-Policy allows only this server's own script and style, so a queue named
``<img src=x onerror=alert(1)>`` is shown as that text and could not run if it were not.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from runq.broker import (
    AlreadyExists,
    BrokerUnavailable,
    InvalidInput,
    InvalidTransition,
    NotFound,
    RunqError,
    WorkQueueBusy,
)
from runq.broker.work_queues import WorkQueueInUse
from runq.display.text import error_line, quoted

from .security import Refused

log = logging.getLogger("runq.ui")
#: The one line a client gets for a Redis failure (the detail stays in the log).
UNAVAILABLE = "Redis is unavailable"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _when(value: str | datetime | None) -> str:
    """An ISO time as ``2026-12-01 13:05:07 UTC`` (empty for none)."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _limit(value: int | None) -> str:
    return "∞" if value is None else str(value)


environment = Environment(
    loader=PackageLoader("runq.ui", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(when=_when, pretty=_pretty, limit=_limit, shell=quoted)


def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    """Render ``name`` (or only the fragment ``?fragment=X`` the page allows, for the live
    refresh) with what every page needs: the CSRF token and the read-only flag."""
    guard = request.app.state.guard
    fragment = request.query_params.get("fragment")
    allowed = context.get("fragments", ())
    template = f"_{fragment}.html" if fragment in allowed else name
    html = environment.get_template(template).render(
        request=request,
        csrf=guard.csrf_token(request),
        # actions are hidden when writes are refused: read-only, or not logged in yet
        read_only=guard.read_only or not guard.logged_in(request),
        read_only_mode=guard.read_only,
        needs_login=not guard.logged_in(request),
        token_mode=guard.token is not None,
        path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def reply(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers={"Cache-Control": "no-store"})


def status_of(error: Exception) -> int:
    """The HTTP status of one of runq's errors: the client's mistakes are 4xx."""
    if isinstance(error, Refused):
        return error.status
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, (AlreadyExists, WorkQueueBusy, WorkQueueInUse, InvalidTransition)):
        return 409
    if isinstance(error, BrokerUnavailable):
        return 503
    if isinstance(error, (InvalidInput, RunqError, ValueError)):
        return 400
    return 500


def public_message(error: Exception) -> str:
    """What a client is told: the one line of a client's mistake, but only "Redis is
    unavailable" for the server's own trouble, whose text names the Redis URL (host,
    port, user, db): that detail goes to the server's log, never to the browser."""
    status = status_of(error)
    if status < 500:
        return error_line(error)
    log.warning("runq ui: %s", error_line(error))
    return UNAVAILABLE if status == 503 else "Internal error: see the runq ui log."


def error_reply(request: Request, error: Exception) -> Response:
    """``{"error": "<one line>"}`` for the API, the error page for a page."""
    status, message = status_of(error), public_message(error)
    headers = error.headers if isinstance(error, Refused) else {}
    if request.url.path.startswith("/api/") or request.url.path == "/metrics":
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    response = page(request, "error.html", {"status": status, "message": message}, status=status)
    response.headers.update(headers)
    return response
