"""The login form and logout (token mode): a right token opens a session in Redis and
sets its cookie; logout ends the session on the server, so a copied cookie stops working.

Failed tokens are counted per client (``access.Logins``): after a few, that client's
token checks are refused for a while (HTTP 429), and each failure is logged.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .access import Logins, client_of
from .bodies import form_of
from .render import SECURITY_HEADERS, page
from .security import SESSION_COOKIE, Guard, Refused


def safe_next(target: str) -> str:
    """Only a path on this server (never ``//evil.example``) is a place to go back to."""
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else "/"


def login_form(request: Request, target: str, error: str | None, status: int = 200) -> Response:
    return page(request, "login.html", {"title": "Log in", "next": target, "error": error}, status)


async def login(request: Request) -> Response:
    """GET: the form. POST: check the token (throttled), open a session, set its cookie."""
    guard: Guard = request.app.state.guard
    target = safe_next(request.query_params.get("next", "/"))
    if request.method == "GET" or guard.token is None:
        return login_form(request, target, None)
    guard.check_origin(request)
    given = (await form_of(request)).get("token")
    logins: Logins = request.app.state.logins
    try:
        right = isinstance(given, str) and await run_in_threadpool(
            logins.check_token, client_of(request), given
        )
    except Refused as error:  # locked out: the form says for how long
        response = login_form(request, target, str(error), error.status)
        response.headers.update(error.headers)
        return response
    if not right:
        return login_form(request, target, "Wrong token.", 401)
    session_id, cookie = guard.new_session()
    await run_in_threadpool(logins.sessions.open, session_id, guard.session_age)
    response = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(guard.session_age),
        httponly=True,
        samesite="strict",
        secure=guard.secure_cookie or request.url.scheme == "https",
        path="/",
    )
    return response


async def logout(request: Request) -> Response:
    """End the session on the server (not only the cookie) and drop the cookie."""
    guard: Guard = request.app.state.guard
    guard.check_origin(request)
    session_id = guard.signed_session(request)
    if session_id is not None:
        logins: Logins = request.app.state.logins
        await run_in_threadpool(logins.sessions.close, session_id)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=guard.secure_cookie or request.url.scheme == "https",
    )
    return response


def routes() -> list[Route]:
    return [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
