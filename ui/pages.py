"""The HTML pages: Work Queues, one queue, Flow Runs, one run, Deployments, Agents, login.

Each page is rendered on the server from the same ``views`` the JSON API returns; the
parts that change live are fragments (``?fragment=NAME``) the page's script re-fetches
when an event names their queue.
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from runq.broker import Broker, StateType

from . import views
from .render import SECURITY_HEADERS, page
from .security import SESSION_COOKIE

STATE_CHOICES = [*StateType.__members__, *views.STATE_NAMES]


def html(
    template: str, gather: Callable[[Broker, Request], dict[str, Any]]
) -> Callable[[Request], Any]:
    """A page endpoint: ``gather`` reads the Broker in the thread pool."""

    async def endpoint(request: Request) -> Response:
        context = await run_in_threadpool(gather, request.app.state.broker, request)
        return page(request, template, context)

    return endpoint


def queues_page(broker: Broker, request: Request) -> dict[str, Any]:
    prefix = request.query_params.get("prefix", "")
    return {
        "title": "Work Queues", "prefix": prefix, "queues": views.queues(broker, prefix),
        "fragments": ("queues_table",), "live": "*",
    }


def queue_page(broker: Broker, request: Request) -> dict[str, Any]:
    data = views.queue_page(broker, str(request.path_params["name"]))
    return {
        **data, "title": f"Work queue {data['queue']['name']}",
        "fragments": ("queue_detail",), "live": data["queue"]["name"],
    }


def runs_page(broker: Broker, request: Request) -> dict[str, Any]:
    query = request.query_params
    filters = {key: query.get(key, "") for key in ("queue", "deployment", "flow", "state")}
    before = query.get("before") or None
    runs = views.list_runs(
        broker, queue=filters["queue"] or None, deployment=filters["deployment"] or None,
        flow=filters["flow"] or None, state=filters["state"] or None, before=before,
        limit=views.PAGE_SIZE,
    )
    older = None
    if len(runs) == views.PAGE_SIZE:
        older = "?" + urlencode({**{k: v for k, v in filters.items() if v}, "before": str(runs[-1].id)})
    return {
        "title": "Flow Runs", "filters": filters, "states": STATE_CHOICES,
        "runs": views.shown_runs(broker, runs), "older": older, "paged": before is not None,
        "names": deployment_names(broker), "fragments": ("runs_table",),
        "live": filters["queue"] or "*",
    }


def deployment_names(broker: Broker) -> dict[str, str]:
    return {str(item.id): item.name for item in broker.list_deployments()}


def run_page(broker: Broker, request: Request) -> dict[str, Any]:
    run = views.run_detail(broker, str(request.path_params["id"]))
    return {
        "title": f"Flow run {run['name']}", "run": run, "names": deployment_names(broker),
        "fragments": ("run_detail",), "live": run["work_queue_name"],
    }


def deployments_page(broker: Broker, request: Request) -> dict[str, Any]:
    return {
        "title": "Deployments", "deployments": views.deployments(broker),
        "fragments": ("deployments_table",), "live": "*",
    }


def agents_page(broker: Broker, request: Request) -> dict[str, Any]:
    return {
        "title": "Agents", "agents": views.agent_rows(broker, broker.list_agents()),
        "fragments": ("agents_table",), "live": "*",
    }


async def login(request: Request) -> Response:
    """The login form (token mode): a right token sets the session cookie."""
    guard = request.app.state.guard
    target = safe_next(request.query_params.get("next", "/"))
    if request.method == "GET" or guard.token is None:
        return page(request, "login.html", {"title": "Log in", "next": target, "error": None})
    guard.check_origin(request)
    form = await request.form()
    given = form.get("token")
    if not isinstance(given, str) or not guard.token_matches(given):
        context = {"title": "Log in", "next": target, "error": "Wrong token."}
        return page(request, "login.html", context, status=401)
    response = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(
        SESSION_COOKIE, guard.new_session(), httponly=True, samesite="strict",
        secure=request.url.scheme == "https", path="/",
    )
    return response


async def logout(request: Request) -> Response:
    request.app.state.guard.check_origin(request)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def safe_next(target: str) -> str:
    """Only a path on this server (never ``//evil.example``) is a place to go back to."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


async def home(request: Request) -> Response:
    return RedirectResponse("/work-queues", status_code=307)


def routes() -> list[Route]:
    return [
        Route("/", home),
        Route("/work-queues", html("queues.html", queues_page)),
        Route("/work-queues/{name:path}", html("queue.html", queue_page)),  # a name may hold "/"
        Route("/flow-runs", html("runs.html", runs_page)),
        Route("/flow-runs/{id}", html("run.html", run_page)),
        Route("/deployments", html("deployments.html", deployments_page)),
        Route("/agents", html("agents.html", agents_page)),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
