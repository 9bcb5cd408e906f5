"""A fake Kubernetes API server for the agent's tests, speaking only what the agent uses.

No cluster runs here (nor in CI). Manifests and generated Jobs are checked against the
Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields fail); the UI's and
KEDA's manifests are checked in tests/test_kubernetes_addons.py, with these helpers. The API
conversation runs against ``FakeKubernetes`` below: a threaded HTTP server speaking the
few endpoints the agent uses (create/get/list/watch/delete Jobs, list/watch/get pods, the
followed pod log) with real resourceVersions, label and field selectors, chunked watch
streams that a test can end cleanly (a server timeout), cut (a dropped connection) or
expire (410 Gone). The test drives the "cluster" (pods pending, running, ended; Job
conditions) and checks what the agent asked and concluded.

Why not kmock: its emulator is asyncio/aiohttp (our client is the threaded, synchronous
official one), ignores label/field selectors and resourceVersions in watches, has no pod
log endpoint and no way to drop one watch mid-stream; each would need custom reactions
bridged into its event loop from the test thread. This fake is smaller than that glue.
"""

from __future__ import annotations

import copy
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from kubernetes import client

# ---- the fake API server --------------------------------------------------------------


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any

    @property
    def watch(self) -> bool:
        return self.query.get("watch") == "true"

    def rbac(self) -> tuple[str, str, str]:
        """(apiGroup, resource, verb) this request needs, as a Role names them."""
        group = "batch" if self.path.startswith("/apis/batch/") else ""
        parts = self.path.split("/")
        resource = parts[parts.index("namespaces") + 2]
        named = len(parts) > parts.index("namespaces") + 3
        if self.path.endswith("/log"):
            return group, f"{resource}/log", "get"
        verb = {"POST": "create", "DELETE": "delete", "PUT": "update", "PATCH": "patch"}.get(
            self.method
        )
        if verb is None:
            verb = "get" if named else ("watch" if self.watch else "list")
        return group, resource, verb


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client closing a kept-alive connection is normal here (abandoned streams)."""
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class FakeKubernetes:
    """The API server's part the agent talks to, with state the test drives."""

    ROUTE = re.compile(
        r"^/api(?:s/batch)?/v1/namespaces/(?P<ns>[^/]+)/(?P<kind>jobs|pods)"
        r"(?:/(?P<name>[^/]+))?(?P<log>/log)?$"
    )

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.version = 1000
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"jobs": {}, "pods": {}}
        self.events: dict[str, list[tuple[int, str, dict[str, Any]]]] = {"jobs": [], "pods": []}
        self.calls: list[Call] = []
        self.logs: dict[str, list[tuple[str, str]]] = {}
        self.logs_closed: set[str] = set()
        self.lines_written = 0
        self.cuts = {"jobs": 0, "pods": 0, "log": 0}
        self.ends = {"jobs": 0, "pods": 0}
        self.open = {"jobs": 0, "pods": 0, "log": 0}
        self.compacted = 0
        self.refuse_create: tuple[int, str] | None = None
        self.closing = False
        self.server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # ---- lifecycle, client -----------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()

    def api_client(self) -> client.ApiClient:
        configuration = client.Configuration()
        configuration.host = self.url
        return client.ApiClient(configuration)

    # ---- what the test does to the "cluster" -------------------------------------------

    def put(self, kind: str, obj: dict[str, Any]) -> None:
        """Create or update an object (an ADDED or MODIFIED event)."""
        with self.cond:
            self.version += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.version)
            name = obj["metadata"]["name"]
            event = "MODIFIED" if name in self.objects[kind] else "ADDED"
            self.objects[kind][name] = obj
            self.events[kind].append((self.version, event, copy.deepcopy(obj)))
            self.cond.notify_all()

    def remove(self, kind: str, name: str) -> None:
        with self.cond:
            self.version += 1
            obj = self.objects[kind].pop(name)
            obj["metadata"]["resourceVersion"] = str(self.version)
            self.events[kind].append((self.version, "DELETED", obj))
            self.cond.notify_all()

    def set_job_condition(self, name: str, kind: str, reason: str = "", message: str = "") -> None:
        job = copy.deepcopy(self.objects["jobs"][name])
        condition = {"type": kind, "status": "True", "reason": reason, "message": message}
        job["status"] = {
            "conditions": [condition],
            ("succeeded" if kind == "Complete" else "failed"): 1,
        }
        self.put("jobs", job)

    def log(self, pod: str, *lines: str) -> None:
        with self.cond:
            for line in lines:
                self.logs.setdefault(pod, []).append((self._timestamp(), line))
            self.cond.notify_all()

    def close_log(self, pod: str) -> None:
        with self.cond:
            self.logs_closed.add(pod)
            self.cond.notify_all()

    def cut(self, stream: str) -> None:
        """Drop the open ``jobs``/``pods`` watches or ``log`` streams mid-stream."""
        with self.cond:
            self.cuts[stream] += 1
            self.cond.notify_all()

    def end(self, kind: str) -> None:
        """End the open watches cleanly, as the server does at their timeoutSeconds."""
        with self.cond:
            self.ends[kind] += 1
            self.cond.notify_all()

    def compact(self) -> None:
        """Forget history: watching from any version seen so far answers 410 Gone."""
        with self.cond:
            self.version += 1
            self.compacted = self.version

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def requests(
        self, method: str, kind: str, *, watch: bool | None = None, log: bool = False
    ) -> list[Call]:
        with self.cond:
            return [
                call
                for call in self.calls
                if call.method == method
                and f"/{kind}" in call.path
                and call.path.endswith("/log") == log
                and (watch is None or call.watch == watch)
            ]

    def _timestamp(self) -> str:
        """RFC 3339 with nanoseconds, strictly increasing (kubelet's ``timestamps=true``)."""
        now = datetime.now(UTC)
        self.lines_written += 1  # the last three digits keep stamps of one microsecond apart
        return (
            now.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{now.microsecond:06d}{self.lines_written % 1000:03d}Z"
        )

    # ---- serving ------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                fake._serve(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                fake._serve(self, "POST")

            def do_DELETE(self) -> None:  # noqa: N802
                fake._serve(self, "DELETE")

        return Handler

    def _serve(self, request: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        call = Call(method, url.path, dict(parse_qsl(url.query)), json.loads(raw) if raw else None)
        with self.cond:
            self.calls.append(call)
            self.cond.notify_all()
        route = self.ROUTE.match(url.path)
        if route is None:
            self._reply(request, 404, self._status(404, "NotFound", f"no route {url.path}"))
            return
        kind, name = route["kind"], route["name"]
        try:
            if route["log"]:
                self._stream_log(request, name, call.query)
            elif method == "POST":
                self._create(request, kind, route["ns"], call.body)
            elif method == "DELETE":
                self._delete(request, kind, name)
            elif name:
                self._get(request, kind, name)
            elif call.watch:
                self._watch(request, kind, call.query)
            else:
                self._list(request, kind, call.query)
        except (BrokenPipeError, ConnectionResetError):
            request.close_connection = True

    @staticmethod
    def _status(code: int, reason: str, message: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "code": code,
            "reason": reason,
            "message": message,
        }

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        request.send_response(code)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _create(
        self, request: BaseHTTPRequestHandler, kind: str, namespace: str, body: dict[str, Any]
    ) -> None:
        if self.refuse_create:
            code, message = self.refuse_create
            self._reply(request, code, self._status(code, "Forbidden", message))
            return
        obj = copy.deepcopy(body)
        obj["metadata"].update(
            namespace=namespace,
            uid=f"uid-{obj['metadata']['name']}",
            creationTimestamp="2024-05-01T12:00:00Z",
        )
        self.put(kind, obj)
        self._reply(request, 201, self.objects[kind][obj["metadata"]["name"]])

    def _delete(self, request: BaseHTTPRequestHandler, kind: str, name: str) -> None:
        """Foreground deletion: the Job stays, marked, until the test removes it."""
        obj = self.objects[kind].get(name)
        if obj is None:
            self._reply(request, 404, self._status(404, "NotFound", f'{kind} "{name}" not found'))
            return
        marked = copy.deepcopy(obj)
        marked["metadata"].update(
            deletionTimestamp="2024-05-01T12:05:00Z", finalizers=["foregroundDeletion"]
        )
        self.put(kind, marked)
        self._reply(request, 200, self.objects[kind][name])

    def _get(self, request: BaseHTTPRequestHandler, kind: str, name: str) -> None:
        with self.cond:
            obj = copy.deepcopy(self.objects[kind].get(name))
        if obj is None:
            self._reply(request, 404, self._status(404, "NotFound", f'{kind} "{name}" not found'))
        else:
            self._reply(request, 200, obj)

    @staticmethod
    def _matches(obj: dict[str, Any], query: dict[str, str]) -> bool:
        for term in filter(None, query.get("labelSelector", "").split(",")):
            key, _, value = term.partition("=")
            if obj["metadata"].get("labels", {}).get(key) != value:
                return False
        for term in filter(None, query.get("fieldSelector", "").split(",")):
            key, _, value = term.partition("=")
            if key != "metadata.name" or obj["metadata"]["name"] != value:
                return False
        return True

    def _list(self, request: BaseHTTPRequestHandler, kind: str, query: dict[str, str]) -> None:
        with self.cond:
            items = [
                copy.deepcopy(o) for o in self.objects[kind].values() if self._matches(o, query)
            ]
            version = str(self.version)
        listing = {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": version}}
        listing["items"] = items
        self._reply(request, 200, listing)

    @staticmethod
    def _start_chunks(request: BaseHTTPRequestHandler, content_type: str) -> None:
        request.send_response(200)
        request.send_header("Content-Type", content_type)
        request.send_header("Transfer-Encoding", "chunked")
        request.end_headers()

    @staticmethod
    def _chunk(request: BaseHTTPRequestHandler, data: bytes) -> None:
        request.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _watch(self, request: BaseHTTPRequestHandler, kind: str, query: dict[str, str]) -> None:
        since = int(query.get("resourceVersion") or self.version)
        deadline = time.monotonic() + float(query.get("timeoutSeconds", 60))
        self._start_chunks(request, "application/json")
        if since < self.compacted:
            gone = self._status(410, "Expired", f"too old resource version: {since}")
            self._chunk(request, json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
            self._chunk(request, b"")
            return
        with self.cond:
            cut, end, position = self.cuts[kind], self.ends[kind], 0
            self.open[kind] += 1
            self.cond.notify_all()
        try:
            while True:
                with self.cond:
                    self.cond.wait_for(
                        lambda: (
                            len(self.events[kind]) > position
                            or self.cuts[kind] != cut
                            or self.ends[kind] != end
                            or self.closing
                        ),
                        timeout=max(0.0, deadline - time.monotonic()),
                    )
                    batch, position = self.events[kind][position:], len(self.events[kind])
                    dropped, ended = self.cuts[kind] != cut, self.ends[kind] != end or self.closing
                for version, event, obj in batch:
                    if version > since and self._matches(obj, query):
                        self._chunk(
                            request, json.dumps({"type": event, "object": obj}).encode() + b"\n"
                        )
                if dropped:
                    request.close_connection = (
                        True  # no last chunk: the client sees a broken stream
                    )
                    return
                if ended or time.monotonic() >= deadline:
                    self._chunk(request, b"")
                    return
        finally:
            with self.cond:
                self.open[kind] -= 1

    @staticmethod
    def _epoch(stamp: str) -> float:
        return datetime.fromisoformat(stamp[:26]).replace(tzinfo=UTC).timestamp()

    def _stream_log(self, request: BaseHTTPRequestHandler, pod: str, query: dict[str, str]) -> None:
        with self.cond:
            known = pod in self.objects["pods"]
        if not known:
            self._reply(request, 404, self._status(404, "NotFound", f'pods "{pod}" not found'))
            return
        stamps = query.get("timestamps") == "true"
        since = float(query["sinceSeconds"]) if "sinceSeconds" in query else None
        not_before = datetime.now(UTC).timestamp() - since if since else None
        self._start_chunks(request, "text/plain")
        with self.cond:
            cut, position = self.cuts["log"], 0
            self.open["log"] += 1
            self.cond.notify_all()
        try:
            while True:
                with self.cond:
                    self.cond.wait_for(
                        lambda: (
                            len(self.logs.get(pod, [])) > position
                            or pod in self.logs_closed
                            or self.cuts["log"] != cut
                            or self.closing
                        ),
                        timeout=30,
                    )
                    batch, position = self.logs.get(pod, [])[position:], len(self.logs.get(pod, []))
                    dropped, ended = (
                        self.cuts["log"] != cut,
                        pod in self.logs_closed or self.closing,
                    )
                lines = [
                    (f"{stamp} {line}" if stamps else line)
                    for stamp, line in batch
                    if not_before is None or self._epoch(stamp) >= not_before
                ]
                if lines:
                    self._chunk(request, "".join(f"{line}\n" for line in lines).encode())
                if dropped:
                    request.close_connection = True
                    return
                if ended or query.get("follow") != "true":
                    self._chunk(request, b"")
                    return
        finally:
            with self.cond:
                self.open["log"] -= 1


def job_pod(
    job: str,
    name: str,
    phase: str,
    *,
    waiting: tuple[str, str] | None = None,
    running: bool = False,
    exit_code: int | None = None,
    unschedulable: str | None = None,
    created: str = "2024-05-01T12:00:01Z",
) -> dict[str, Any]:
    """A pod of ``job`` as the Job controller and the kubelet would report it."""
    state: dict[str, Any] = {}
    if waiting:
        state = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
    elif running:
        state = {"running": {"startedAt": "2024-05-01T12:00:02Z"}}
    elif exit_code is not None:
        state = {
            "terminated": {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
            }
        }
    status: dict[str, Any] = {"phase": phase}
    if state:
        status["containerStatuses"] = [
            {
                "name": "runq",
                "state": state,
                "ready": running,
                "restartCount": 0,
                "image": "runq:test",
                "imageID": "",
            }
        ]
    if unschedulable:
        status["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": unschedulable,
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "runq",
            "labels": {"job-name": job},
            "creationTimestamp": created,
        },
        "spec": {"restartPolicy": "Never", "containers": [{"name": "runq", "image": "runq:test"}]},
        "status": status,
    }
