"""A fake Kubernetes API server for the agent's tests, speaking only what the agent uses.

No cluster runs here (nor in CI). Manifests and generated Jobs are checked against the
Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields fail); the UI's and
KEDA's manifests are checked in tests/test_kubernetes_addons.py, with these helpers. The API
conversation runs against ``FakeKubernetes`` below: a threaded HTTP server speaking the
few endpoints the agent uses (create/get/list/watch/delete Jobs, list/watch/get pods, the
followed pod log) with real resourceVersions, label and field selectors, chunked watch
streams that a test can end cleanly (a server timeout), cut (a dropped connection) or
expire (410 Gone). The test drives the "cluster" (pods pending, running, ended; Job
conditions) and checks what the agent asked and concluded. This module holds the HTTP
side; the cluster's state, the methods a test drives it by and ``job_pod`` are in
tests/kubernetes_fake_cluster.py, which ``FakeKubernetes`` extends.

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
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from kubernetes import client

from tests.kubernetes_fake_cluster import Call, FakeCluster

# ---- the fake API server --------------------------------------------------------------


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client closing a kept-alive connection is normal here (abandoned streams)."""
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class FakeKubernetes(FakeCluster):
    """The API server's part the agent talks to, with state the test drives."""

    ROUTE = re.compile(
        r"^/api(?:s/batch)?/v1/namespaces/(?P<ns>[^/]+)/(?P<kind>jobs|pods)"
        r"(?:/(?P<name>[^/]+))?(?P<log>/log)?$"
    )

    def __init__(self) -> None:
        super().__init__()
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
