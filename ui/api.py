"""The JSON API under ``/api/``: everything a page shows or does, with the CLI's
``-o json`` field names and the Broker's own validation.

Writes are ``POST`` (a form or a JSON body; a concurrency limit is changed by ``PATCH``
and deleted by ``DELETE``, behind the same write checks); errors are HTTP 4xx with
``{"error": "<one line>"}``. A path's NAME_OR_ID is a name or an id; a name holding
``/`` is given by its id. See docs/ui.md for the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from runq.broker import Broker, InvalidInput
from runq.broker.work_queues import UNCHANGED

from . import views
from .bodies import MAX_DEPTH, body_of, depth_of, parse_json
from .render import reply

#: The highest part of a log line id Redis accepts (an unsigned 64-bit integer).
MAX_ENTRY_PART = (1 << 64) - 1


def broker_of(request: Request) -> Broker:
    broker: Broker = request.app.state.broker
    return broker


def optional_int(data: dict[str, Any], key: str) -> int | None:
    """An integer field; empty or absent is None (a form's empty limit box)."""
    value = data.get(key)
    if value is None or value == "":
        return None
    wrong = InvalidInput(f"{key} must be an integer, not {value!r}.")
    # JSON's 2.7 must not become 2, nor its 1e400 (infinity) an OverflowError (a 500)
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise wrong
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise wrong from None


def json_object(data: dict[str, Any], key: str) -> dict[str, Any]:
    """A JSON object field, given as an object or as its text (a form's textarea)."""
    value = data.get(key) or {}
    if isinstance(value, str):
        value = parse_json(value, key)
    elif depth_of(value) > MAX_DEPTH:  # a JSON body's object, parsed within the bound
        raise InvalidInput(f"{key} nests deeper than {MAX_DEPTH} levels.")
    if not isinstance(value, dict):
        raise InvalidInput(f"{key} must be a JSON object.")
    return value


def text(data: dict[str, Any], key: str, default: str = "") -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string.")
    return value


def truthy(data: dict[str, Any], key: str) -> bool:
    return str(data.get(key, "")).lower() in ("1", "true", "on", "yes")


def reader(fetch: Callable[[Broker, Request], Any]) -> Callable[[Request], Any]:
    """A GET endpoint: ``fetch`` runs in the thread pool (the Broker is synchronous)."""

    async def endpoint(request: Request) -> Response:
        return reply(await run_in_threadpool(fetch, broker_of(request), request))

    return endpoint


def writer(act: Callable[[Broker, Request, dict[str, Any]], Any]) -> Callable[[Request], Any]:
    """A write endpoint (POST, PATCH, DELETE): the guard checked the request already
    (middleware)."""

    async def endpoint(request: Request) -> Response:
        data = await body_of(request)
        return reply(await run_in_threadpool(act, broker_of(request), request, data))

    return endpoint


def arg(request: Request, name: str = "name") -> str:
    return str(request.path_params[name])


def queue_name(broker: Broker, request: Request) -> str:
    return broker.read_work_queue(arg(request)).name


def run_id(broker: Broker, request: Request) -> str:
    return str(broker.read_flow_run(arg(request, "id")).id)


# ---- work queues ----------------------------------------------------------------------


def create_queue(broker: Broker, _: Request, data: dict[str, Any]) -> Any:
    queue = broker.create_work_queue(
        text(data, "name"),
        concurrency_limit=optional_int(data, "concurrency_limit"),
        description=text(data, "description"),
    )
    return views.queue_row(broker, queue, broker.server_time())


def queue_action(action: str) -> Callable[[Broker, Request, dict[str, Any]], Any]:
    def act(broker: Broker, request: Request, data: dict[str, Any]) -> Any:
        name = queue_name(broker, request)
        if action == "pause":
            queue = broker.pause_work_queue(name)
        elif action == "resume":
            queue = broker.resume_work_queue(name)
        elif action == "clear-concurrency-limit":
            queue = broker.clear_concurrency_limit(name)
        else:
            limit = optional_int(data, "limit")
            if limit is None:
                raise InvalidInput("limit is required: an integer >= 0.")
            queue = broker.set_concurrency_limit(name, limit)
        return views.queue_row(broker, queue, broker.server_time())

    return act


def update_queue(broker: Broker, request: Request, data: dict[str, Any]) -> Any:
    """``description``, ``concurrency_limit`` and/or ``fair_by`` (empty or null: none); a
    key left out stays as it is (``runq work-queue update``)."""
    limit = optional_int(data, "concurrency_limit") if "concurrency_limit" in data else UNCHANGED
    fair_by = optional_text(data, "fair_by") if "fair_by" in data else UNCHANGED
    queue = broker.update_work_queue(
        queue_name(broker, request),
        description=text(data, "description") if "description" in data else None,
        concurrency_limit=limit,
        fair_by=fair_by,
    )
    return views.queue_row(broker, queue, broker.server_time())


def delete_queue(broker: Broker, request: Request, data: dict[str, Any]) -> Any:
    name = queue_name(broker, request)
    broker.delete_work_queue(name, force=truthy(data, "force"))
    return {"deleted": name}


def preview(broker: Broker, request: Request) -> Any:
    hours = request.query_params.get("hours", "1")
    try:
        value = float(hours)
    except ValueError:
        raise InvalidInput(f"hours must be a number, not {hours!r}.") from None
    return views.queue_preview(broker, queue_name(broker, request), value)


# ---- flow runs ------------------------------------------------------------------------


def list_runs(broker: Broker, request: Request) -> Any:
    query = request.query_params
    limit = optional_int(dict(query), "limit") or views.PAGE_SIZE
    runs = views.list_runs(
        broker,
        queue=query.get("queue"),
        deployment=query.get("deployment"),
        flow=query.get("flow"),
        state=query.get("state"),
        before=query.get("before"),
        limit=limit,
    )
    return views.shown_runs(broker, runs)


def log_cursor(after: str) -> str:
    """``after`` as Redis takes it: each part of ``ms-seq`` an unsigned 64-bit integer (a
    larger one is the client's mistake, a 400, not a refusal by Redis, a 503)."""
    parts = after.split("-", 1)
    if all(part.isascii() and part.isdigit() for part in parts):
        if any(int(part) > MAX_ENTRY_PART for part in parts):
            raise InvalidInput(
                f"{after!r} is not a log line id: each part is at most {MAX_ENTRY_PART}."
            )
    return after


def run_logs(broker: Broker, request: Request) -> Any:
    after = log_cursor(request.query_params.get("after", "0"))
    lines = broker.read_logs(run_id(broker, request), after=after, count=1000)
    return [line.model_dump(mode="json") for line in lines]


def run_action(action: str) -> Callable[[Broker, Request, dict[str, Any]], Any]:
    def act(broker: Broker, request: Request, data: dict[str, Any]) -> Any:
        found = run_id(broker, request)
        if action == "cancel":
            broker.cancel_flow_run(found)
        elif action == "retry":
            broker.retry_flow_run(found)
        else:
            broker.delete_flow_run(found)
            return {"deleted": found}
        return views.run_detail(broker, found)

    return act


# ---- deployments ----------------------------------------------------------------------


def run_deployment(broker: Broker, request: Request, data: dict[str, Any]) -> Any:
    run = broker.create_flow_run(
        deployment=arg(request), parameters=json_object(data, "parameters")
    )
    return views.run_detail(broker, str(run.id))


def schedule_action(active: bool) -> Callable[[Broker, Request, dict[str, Any]], Any]:
    def act(broker: Broker, request: Request, data: dict[str, Any]) -> Any:
        found = broker.read_deployment(arg(request))
        updated = broker.update_deployment(str(found.id), is_schedule_active=active)
        return views.deployment_row(broker, updated)

    return act


# ---- concurrency limits ---------------------------------------------------------------


def optional_text(data: dict[str, Any], key: str) -> str | None:
    """A text field; empty or null is None (a form's empty rate box: no rate)."""
    if data.get(key) in (None, ""):
        return None
    return text(data, key)


def create_limit(broker: Broker, _: Request, data: dict[str, Any]) -> Any:
    """``name``, ``limit`` and/or ``rate`` (``10/1m``), ``description``."""
    created = broker.create_concurrency_limit(
        text(data, "name"),
        optional_int(data, "limit"),
        rate=optional_text(data, "rate"),
        description=text(data, "description"),
    )
    return views.limit_row(created)


def update_limit(broker: Broker, request: Request, data: dict[str, Any]) -> Any:
    """``limit``, ``rate`` (empty or null: that cap removed) and/or ``description``; a key
    left out stays as it is (``runq concurrency-limit update``)."""
    changes: dict[str, Any] = {}
    if "limit" in data:
        changes["limit"] = optional_int(data, "limit")
    if "rate" in data:
        changes["rate"] = optional_text(data, "rate")
    if "description" in data:
        changes["description"] = text(data, "description")
    if not changes:
        raise InvalidInput("Nothing to update: give limit, rate or description.")
    return views.limit_row(broker.update_concurrency_limit(arg(request), **changes))


def delete_limit(broker: Broker, request: Request, data: dict[str, Any]) -> Any:
    name = arg(request)
    broker.delete_concurrency_limit(name)
    return {"deleted": name}


async def events(request: Request) -> Response:
    """Server-sent events: one ``change`` per queue or run change (any message means
    "refresh"), a ``tick`` every few seconds."""
    hub = request.app.state.hub
    return StreamingResponse(
        hub.stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def not_found(request: Request) -> Response:
    return JSONResponse({"error": f"No API endpoint {request.url.path}."}, status_code=404)


def routes() -> list[Route]:
    get, post = ["GET"], ["POST"]
    queue = "/api/work-queues/{name}"
    run = "/api/flow-runs/{id}"
    deployment = "/api/deployments/{name}"
    limit = "/api/concurrency-limits/{name:path}"  # a limit's name may hold "/"
    table: list[tuple[str, Any, list[str]]] = [
        (
            "/api/work-queues",
            reader(lambda b, r: views.queues(b, r.query_params.get("prefix"))),
            get,
        ),
        ("/api/work-queues", writer(create_queue), post),
        (queue + "/preview", reader(preview), get),
        # after the suffixed routes: a name holding "/" still reads (writes go by id)
        ("/api/work-queues/{name:path}", reader(lambda b, r: views.queue_page(b, arg(r))), get),
        (queue + "/delete", writer(delete_queue), post),
        (queue + "/update", writer(update_queue), post),
        ("/api/flow-runs", reader(list_runs), get),
        (run, reader(lambda b, r: views.run_detail(b, arg(r, "id"))), get),
        (run + "/logs", reader(run_logs), get),
        ("/api/deployments", reader(lambda b, r: views.deployments(b)), get),
        (deployment, reader(lambda b, r: views.deployment_row(b, b.read_deployment(arg(r)))), get),
        (deployment + "/run", writer(run_deployment), post),
        (deployment + "/pause-schedule", writer(schedule_action(False)), post),
        (deployment + "/resume-schedule", writer(schedule_action(True)), post),
        ("/api/agents", reader(lambda b, r: views.agent_rows(b, b.list_agents())), get),
        ("/api/concurrency-limits", reader(lambda b, r: views.limits(b)), get),
        ("/api/concurrency-limits", writer(create_limit), post),
        (limit, reader(lambda b, r: views.limit_detail(b, arg(r))), get),
        (limit, writer(update_limit), ["PATCH"]),
        (limit, writer(delete_limit), ["DELETE"]),
    ]
    for action in ("pause", "resume", "set-concurrency-limit", "clear-concurrency-limit"):
        table.append((f"{queue}/{action}", writer(queue_action(action)), post))
    for action in ("cancel", "retry", "delete"):
        table.append((f"{run}/{action}", writer(run_action(action)), post))
    found = [Route(path, endpoint, methods=methods) for path, endpoint, methods in table]
    found.append(Route("/api/events", events, methods=get))
    found.append(Route("/api/{rest:path}", not_found, methods=["GET", "POST"]))
    return found
