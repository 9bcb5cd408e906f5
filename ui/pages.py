"""The HTML pages: Work Queues, one queue, Flow Runs, one run, Deployments, Agents,
Concurrency Limits and one limit (the login form is ``login.py``'s).

Each page is rendered on the server from the same ``views`` the JSON API returns; the
parts that change live are fragments (``?fragment=NAME``) the page's script re-fetches
when an event names their queue (on Work Queues, only the rows of the queues it names).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from runq.broker import Broker, StateType

from . import views
from .render import page

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
    """One page of the queues (``?page=N``), or only the rows of ``?queue=NAME`` (the
    live refresh of what changed: ``?fragment=queue_rows``)."""
    query = request.query_params
    prefix = query.get("prefix", "")
    context: dict[str, Any] = {
        "title": "Work Queues",
        "prefix": prefix,
        "fragments": ("queues_table", "queue_rows"),
        "live": "*",
    }
    if query.get("fragment") == "queue_rows":
        names = query.getlist("queue")[: views.QUEUES_PER_PAGE]
        return {**context, "queues": views.queue_rows(broker, names)}
    return {**context, **views.queues_page(broker, prefix, query.get("page", "1"))}


def queue_page(broker: Broker, request: Request) -> dict[str, Any]:
    data = views.queue_page(broker, str(request.path_params["name"]))
    return {
        **data,
        "title": f"Work queue {data['queue']['name']}",
        "fragments": ("queue_detail",),
        "live": data["queue"]["name"],
    }


def runs_page(broker: Broker, request: Request) -> dict[str, Any]:
    query = request.query_params
    filters = {key: query.get(key, "") for key in ("queue", "deployment", "flow", "state")}
    before = query.get("before") or None
    runs = views.list_runs(
        broker,
        queue=filters["queue"] or None,
        deployment=filters["deployment"] or None,
        flow=filters["flow"] or None,
        state=filters["state"] or None,
        before=before,
        limit=views.PAGE_SIZE,
    )
    older = None
    if len(runs) == views.PAGE_SIZE:
        older = "?" + urlencode(
            {**{k: v for k, v in filters.items() if v}, "before": str(runs[-1].id)}
        )
    return {
        "title": "Flow Runs",
        "filters": filters,
        "states": STATE_CHOICES,
        "runs": views.shown_runs(broker, runs),
        "older": older,
        "paged": before is not None,
        "names": deployment_names(broker),
        "fragments": ("runs_table",),
        "live": filters["queue"] or "*",
    }


def deployment_names(broker: Broker) -> dict[str, str]:
    return {str(item.id): item.name for item in broker.list_deployments()}


def run_page(broker: Broker, request: Request) -> dict[str, Any]:
    run = views.run_detail(broker, str(request.path_params["id"]))
    return {
        "title": f"Flow run {run['name']}",
        "run": run,
        "names": deployment_names(broker),
        "fragments": ("run_detail",),
        "live": run["work_queue_name"],
    }


def deployments_page(broker: Broker, request: Request) -> dict[str, Any]:
    return {
        "title": "Deployments",
        "deployments": views.deployments(broker),
        "fragments": ("deployments_table",),
        "live": "*",
    }


def agents_page(broker: Broker, request: Request) -> dict[str, Any]:
    return {
        "title": "Agents",
        "agents": views.agent_rows(broker, broker.list_agents()),
        "fragments": ("agents_table",),
        "live": "*",
    }


def limits_page(broker: Broker, request: Request) -> dict[str, Any]:
    return {
        "title": "Concurrency Limits",
        "limits": views.limits(broker),
        "fragments": ("limits_table",),
        "live": "*",
    }


def limit_page(broker: Broker, request: Request) -> dict[str, Any]:
    data = views.limit_detail(broker, str(request.path_params["name"]))
    return {
        **data,
        "title": f"Concurrency limit {data['limit']['name']}",
        "fragments": ("limit_detail",),
        "live": "*",  # its holders and waiting runs are on any queue
    }


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
        Route("/concurrency-limits", html("limits.html", limits_page)),
        Route("/concurrency-limits/{name:path}", html("limit.html", limit_page)),  # "/" too
    ]
