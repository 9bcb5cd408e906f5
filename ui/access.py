"""The check every request passes before a route: its Host, its credentials (a live
session in Redis, or the bearer token, both throttled per client after failures), then
the read and write rules of ``security.Guard``.

Plain ASGI, so the event streams pass through untouched; it stamps each response with
the server's time (``Server-Timing``, read by bench/ui.py).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runq.broker import Broker, RunqError
from runq.broker.ui_logins import LoginFailures
from runq.broker.ui_sessions import UISessions

from .render import error_reply
from .security import CREDENTIALS, SAFE_METHODS, Credentials, Guard, Refused

log = logging.getLogger("runq.ui")

#: Failed token checks (login form or bearer header) a client may make per window.
FAILED_LOGINS_ALLOWED = 5
#: Seconds of that window, opened by a client's first failure.
FAILED_LOGIN_WINDOW = 300.0
#: Paths anyone may read: the probes, the login form and its script and style.
OPEN_PATHS = ("/healthz", "/readyz", "/login", "/logout")
OPEN_PREFIXES = ("/static/",)
#: Paths that never look at credentials (a probe must not depend on Redis for them).
PLAIN_PATHS = ("/healthz", "/readyz")


def client_of(request: Request) -> str:
    """The client a failure is counted against: its address, as uvicorn saw it (the
    ``X-Forwarded-For`` of a trusted proxy, ``--forwarded-allow-ips``), an IPv6 address
    by its /64, the block one machine is usually given."""
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64] or "unknown"
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class Logins:
    """The token checks of one UI, throttled per client, and its sessions."""

    def __init__(self, broker: Broker, guard: Guard) -> None:
        self.guard = guard
        self.sessions = UISessions(broker)
        self.failures = LoginFailures(broker, window_seconds=FAILED_LOGIN_WINDOW)

    def check_token(self, client: str, given: str) -> bool:
        """Whether ``given`` is the token, refused outright while ``client`` is locked
        out; a wrong one is counted and logged (runs in the thread pool: Redis)."""
        locked = self.failures.current(client)
        if locked.attempts >= FAILED_LOGINS_ALLOWED:
            raise too_many(locked.seconds_left)
        if self.guard.token_matches(given):
            if locked.attempts:
                self.failures.cleared(client)
            return True
        count, left = self.failures.failed(client)
        if count >= FAILED_LOGINS_ALLOWED:
            log.warning(
                "runq ui: failed login from %s (%d in a row): its token checks are refused "
                "for %d s",
                client,
                count,
                left,
            )
        else:
            log.warning(
                "runq ui: failed login from %s (%d of %d allowed in %d s)",
                client,
                count,
                FAILED_LOGINS_ALLOWED,
                FAILED_LOGIN_WINDOW,
            )
        return False


def too_many(seconds_left: float) -> Refused:
    wait = max(1, int(seconds_left + 0.999))
    return Refused(
        429,
        f"Too many failed logins from your address: try again in {wait} s.",
        headers={"Retry-After": str(wait)},
    )


def resolve(logins: Logins, request: Request) -> Credentials:
    """The request's credentials (thread pool: Redis). A wrong bearer token is refused
    here, on a read as on a write: every guess counts."""
    guard = logins.guard
    bearer = request.headers.get("authorization", "")
    if guard.token is not None and bearer.lower().startswith("bearer "):
        if not logins.check_token(client_of(request), bearer[7:].strip()):
            raise Refused(401, "Wrong UI token in the Authorization header.")
        return Credentials(bearer=True)
    session_id = guard.signed_session(request)  # a forged cookie costs Redis nothing
    if session_id is not None and logins.sessions.alive(session_id):
        return Credentials(session_id=session_id)
    return Credentials()


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class AccessMiddleware:
    """Host, credentials, then the read and write checks, before every route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        guard: Guard = request.app.state.guard
        path = request.url.path
        try:
            guard.check_host(request)
            if path not in PLAIN_PATHS and not path.startswith(OPEN_PREFIXES):
                credentials = await run_in_threadpool(resolve, request.app.state.logins, request)
                scope.setdefault("state", {})[CREDENTIALS] = credentials
            if not is_open(path):
                self.check_read(guard, request)
            if request.method not in SAFE_METHODS and path not in ("/login", "/logout"):
                guard.check_write(request)
        except LoginNeeded:
            target = quote(path + (f"?{request.url.query}" if request.url.query else ""), safe="/")
            await RedirectResponse(f"/login?next={target}", status_code=303)(scope, receive, send)
            return
        except (Refused, RunqError) as error:
            await error_reply(request, error)(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                spent = (time.perf_counter() - started) * 1000
                MutableHeaders(scope=message).append("Server-Timing", f"app;dur={spent:.2f}")
            await send(message)

        await self.app(scope, receive, timed)

    @staticmethod
    def check_read(guard: Guard, request: Request) -> None:
        """A page read without the token goes to the login form; anything else (the API,
        /metrics, a page's fragment fetched by its script) is 401."""
        try:
            guard.check_read(request)
        except Refused:
            page = not request.url.path.startswith(("/api/", "/metrics"))
            if (
                page
                and request.method in ("GET", "HEAD")
                and "fragment" not in request.query_params
            ):
                raise LoginNeeded() from None
            raise


class LoginNeeded(Exception):
    """A page read that needs the login form first."""
