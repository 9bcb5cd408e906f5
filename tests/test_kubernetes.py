"""Kubernetes: the shipped manifests, the Jobs runq generates, and the agent's API conversation.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import kubernetes_validate
import pytest
import yaml
from kubernetes import client

from runq.agent.infrastructure import InfrastructureError
from runq.agent.infrastructure import kubernetes as k8s
from runq.agent.infrastructure.kubernetes import (
    JsonPatchError,
    KubernetesHandle,
    KubernetesRunner,
    api_client_for,
    apply_json_patch,
    job_manifest,
)
from runq.broker import Broker, FlowRun
from runq.broker import KubernetesInfrastructure as Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"
#: Schema versions every manifest must pass: a widely deployed one and the newest shipped.
SCHEMA_VERSIONS = ("1.30", kubernetes_validate.latest_version())
ENGINE_ENV = {
    "RUNQ_API_URL": "redis://redis.runq.svc:6379/0",
    "RUNQ_CLAIM_TOKEN": "1",
    "RUNQ_AGENT_ID": "agent-1",
}


def validate(document: dict[str, Any]) -> None:
    for version in SCHEMA_VERSIONS:
        kubernetes_validate.validate(document, version, strict=True)


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    """Wait for a condition (checked every 10 ms), failing with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)
    return value


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


# ---- fixtures -----------------------------------------------------------------------


def role_rules() -> set[tuple[str, str, str]]:
    """Every (apiGroup, resource, verb) the shipped Role grants."""
    role = next(doc for doc in documents(DEPLOY / "rbac.yaml") if doc["kind"] == "Role")
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.fixture
def fake() -> Iterator[FakeKubernetes]:
    """The fake API server; afterwards, every request made must be one the Role allows."""
    server = FakeKubernetes()
    server.start()
    yield server
    server.stop()
    used = {call.rbac() for call in server.calls}
    assert used <= role_rules(), f"requests the Role does not grant: {used - role_rules()}"


@pytest.fixture
def handles() -> Iterator[list[KubernetesHandle]]:
    """Handles a test started; whatever is still followed afterwards is let go."""
    started: list[KubernetesHandle] = []
    yield started
    for handle in started:
        handle.detach()


@pytest.fixture
def claimed(broker: Broker) -> FlowRun:
    broker.create_flow_run("q")
    [run] = broker.claim("q", "agent-1")
    return run


def submit(
    fake: FakeKubernetes,
    broker: Broker,
    run: FlowRun,
    handles: list[KubernetesHandle],
    **settings: Any,
) -> KubernetesHandle:
    options = {"namespace": "runq", "image": "runq:test", "stream_output": True, **settings}
    infrastructure = KubernetesRunner(broker, Settings(**options), api_client=fake.api_client())
    handle = infrastructure.submit(run, None, dict(ENGINE_ENV))
    handles.append(handle)
    return handle


def running(
    fake: FakeKubernetes, broker: Broker, run: FlowRun, handles: list[KubernetesHandle]
) -> tuple[KubernetesHandle, str, str]:
    """Submit ``run``; its pod runs and the handle follows its log: (handle, job, pod)."""
    handle = submit(fake, broker, run, handles)
    job, pod = handle.job_name, f"{handle.job_name}-abcde"
    fake.put("pods", job_pod(job, pod, "Running", running=True))
    fake.wait_for(lambda: fake.open["log"] == 1, "the log stream")
    return handle, job, pod


class Echo:
    """What the handles echoed (``stream_output``): the pod's lines reach the agent's output
    only; the engine in the pod stores them in the run's log itself."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys, self.seen = capsys, ""

    def __call__(self, broker: Broker, run: FlowRun) -> list[str]:
        self.seen += self.capsys.readouterr().out
        prefix = f"{run.name} | "
        return [line[len(prefix) :] for line in self.seen.splitlines() if line.startswith(prefix)]


@pytest.fixture
def messages(capsys: pytest.CaptureFixture[str]) -> Echo:
    return Echo(capsys)


def finish_pod(fake: FakeKubernetes, job: str, pod: str, exit_code: int, *lines: str) -> None:
    """The pod runs, prints ``lines`` and ends with ``exit_code``."""
    fake.put("pods", job_pod(job, pod, "Running", running=True))
    fake.log(pod, *lines)
    fake.put(
        "pods", job_pod(job, pod, "Succeeded" if exit_code == 0 else "Failed", exit_code=exit_code)
    )
    fake.close_log(pod)


# ---- the conversation -----------------------------------------------------------------


def test_a_job_runs_to_completion_and_its_log_is_echoed(
    messages: Echo,
    fake: FakeKubernetes,
    broker: Broker,
    claimed: FlowRun,
    handles: list[KubernetesHandle],
) -> None:
    handle = submit(fake, broker, claimed, handles, env={"EXTRA": "1"})
    job = handle.job_name
    assert handle.infrastructure_id == f"runq:{job}"
    [create] = fake.requests("POST", "jobs")
    assert create.path == "/apis/batch/v1/namespaces/runq/jobs"
    validate(create.body)
    container = create.body["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["runq", "flow-run", "execute", str(claimed.id)]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["EXTRA"] == "1" and env["RUNQ_API_URL"] == ENGINE_ENV["RUNQ_API_URL"]
    assert create.body["metadata"]["labels"]["runq.io/flow-run-id"] == str(claimed.id)
    assert create.body["metadata"]["labels"]["runq.io/agent-id"] == "agent-1"

    # Pending, and the pod watch breaks meanwhile: it is resumed, nothing is concluded.
    fake.put("pods", job_pod(job, f"{job}-abcde", "Pending", waiting=("ContainerCreating", "")))
    fake.wait_for(lambda: fake.open["pods"] == 1, "the pod watch")
    fake.cut("pods")
    fake.wait_for(
        lambda: len(fake.requests("GET", "pods", watch=True)) == 2, "the pod watch to resume"
    )
    assert handle.poll() is None

    fake.put("pods", job_pod(job, f"{job}-abcde", "Running", running=True))
    fake.wait_for(lambda: fake.open["log"] == 1, "the log stream")
    fake.log(f"{job}-abcde", "hello", "world")
    wait_until(
        lambda: messages(broker, claimed) == ["hello", "world"], "the lines in the run's log"
    )
    assert handle.poll() is None

    fake.put("pods", job_pod(job, f"{job}-abcde", "Succeeded", exit_code=0))
    fake.close_log(f"{job}-abcde")
    fake.set_job_condition(job, "Complete")
    assert wait_until(lambda: handle.poll() is not None, "the Job's end") and handle.poll() == 0
    assert handle.reason is None
    assert messages(broker, claimed) == ["hello", "world"]
    [log_call] = fake.requests("GET", "pods", log=True)
    assert log_call.query["follow"] == "true" and log_call.query["container"] == "runq"
    assert not fake.requests("DELETE", "jobs")


@pytest.mark.parametrize("how", ["timeout", "dropped", "expired"])
def test_the_job_watch_resumes_and_never_concludes_from_a_break(
    how: str,
    fake: FakeKubernetes,
    broker: Broker,
    claimed: FlowRun,
    handles: list[KubernetesHandle],
) -> None:
    handle = submit(fake, broker, claimed, handles)
    job = handle.job_name
    finish_pod(fake, job, f"{job}-abcde", 0, "done")
    fake.wait_for(lambda: fake.open["jobs"] == 1, "the Job watch")
    [first] = fake.requests("GET", "jobs", watch=True)
    if how == "timeout":
        fake.end("jobs")
    elif how == "dropped":
        fake.cut("jobs")
    else:
        fake.compact()
        fake.cut("jobs")
    expected_watches = 3 if how == "expired" else 2  # expired: the retry gets 410, lists, watches
    fake.wait_for(
        lambda: (
            fake.open["jobs"] == 1
            and len(fake.requests("GET", "jobs", watch=True)) == expected_watches
        ),
        "the Job watch to resume",
    )
    watches = fake.requests("GET", "jobs", watch=True)
    lists = fake.requests("GET", "jobs", watch=False)
    if how == "expired":
        assert len(lists) == 2, "a 410 Gone makes it list again"
        assert int(watches[-1].query["resourceVersion"]) > int(first.query["resourceVersion"])
    else:
        assert len(lists) == 1, "a plain break resumes without listing"
        assert watches[1].query["resourceVersion"] == first.query["resourceVersion"]
    assert handle.poll() is None and handle.reason is None

    fake.set_job_condition(job, "Complete")
    wait_until(lambda: handle.poll() is not None, "the Job's end")
    assert handle.poll() == 0 and handle.reason is None


@pytest.mark.parametrize(
    "reason, pod_status",
    [
        (
            "ImagePullBackOff",
            {"waiting": ("ImagePullBackOff", 'Back-off pulling image "runq:nope"')},
        ),
        ("ErrImagePull", {"waiting": ("ErrImagePull", "manifest unknown")}),
        ("Unschedulable", {"unschedulable": "0/3 nodes are available: 3 Insufficient cpu."}),
    ],
)
def test_a_pod_that_cannot_start_fails_with_its_reason_after_the_pod_timeout(
    reason: str,
    pod_status: dict[str, Any],
    fake: FakeKubernetes,
    broker: Broker,
    claimed: FlowRun,
    handles: list[KubernetesHandle],
) -> None:
    started = time.monotonic()
    handle = submit(fake, broker, claimed, handles, pod_watch_timeout_seconds=1)
    fake.put("pods", job_pod(handle.job_name, f"{handle.job_name}-abcde", "Pending", **pod_status))
    wait_until(lambda: handle.poll() is not None, "the start failure")
    assert time.monotonic() - started >= 1.0, "it waited for the pod watch timeout"
    assert handle.poll() == -1
    assert reason in handle.reason and "could not start" in handle.reason
    message = pod_status.get("unschedulable") or pod_status["waiting"][1]
    assert message in handle.reason
    [delete] = fake.requests("DELETE", "jobs")
    assert delete.body["propagationPolicy"] == "Foreground", (
        "a stuck Job must not start the run later"
    )


def test_a_slow_but_ordinary_pending_pod_is_waited_for(
    fake: FakeKubernetes, broker: Broker, claimed: FlowRun, handles: list[KubernetesHandle]
) -> None:
    handle = submit(fake, broker, claimed, handles, pod_watch_timeout_seconds=1)
    job = handle.job_name
    fake.put("pods", job_pod(job, f"{job}-abcde", "Pending", waiting=("ContainerCreating", "")))
    # Two pod watches after the deadline (each ends at the deadline or by us) and still waiting.
    fake.wait_for(
        lambda: len(fake.requests("GET", "pods", watch=True)) == 2 and fake.open["pods"] == 1,
        "the pod watch past the deadline",
    )
    assert handle.poll() is None
    finish_pod(fake, job, f"{job}-abcde", 0)
    fake.set_job_condition(job, "Complete")
    wait_until(lambda: handle.poll() is not None, "the Job's end")
    assert handle.poll() == 0


def test_a_failed_container_reports_its_exit_code_and_the_job_failure(
    messages: Echo,
    fake: FakeKubernetes,
    broker: Broker,
    claimed: FlowRun,
    handles: list[KubernetesHandle],
) -> None:
    handle = submit(fake, broker, claimed, handles)
    job = handle.job_name
    finish_pod(
        fake, job, f"{job}-abcde", 3, "Traceback (most recent call last):", "RuntimeError: boom"
    )
    fake.set_job_condition(
        job, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
    )
    wait_until(lambda: handle.poll() is not None, "the Job's end")
    assert handle.poll() == 3
    assert "BackoffLimitExceeded" in handle.reason
    assert messages(broker, claimed) == ["Traceback (most recent call last):", "RuntimeError: boom"]


def test_a_broken_log_stream_is_reopened_without_duplicates(
    messages: Echo,
    fake: FakeKubernetes,
    broker: Broker,
    claimed: FlowRun,
    handles: list[KubernetesHandle],
) -> None:
    handle = submit(fake, broker, claimed, handles)
    job, pod = handle.job_name, f"{handle.job_name}-abcde"
    fake.put("pods", job_pod(job, pod, "Running", running=True))
    fake.log(pod, "one", "two")
    wait_until(lambda: messages(broker, claimed) == ["one", "two"], "the first lines")
    fake.cut("log")
    fake.wait_for(
        lambda: len(fake.requests("GET", "pods", log=True)) == 2 and fake.open["log"] == 1,
        "the log stream to reopen",
    )
    assert "sinceSeconds" in fake.requests("GET", "pods", log=True)[1].query
    fake.log(pod, "three")
    fake.put("pods", job_pod(job, pod, "Succeeded", exit_code=0))
    fake.close_log(pod)
    fake.set_job_condition(job, "Complete")
    wait_until(lambda: handle.poll() is not None, "the Job's end")
    assert messages(broker, claimed) == ["one", "two", "three"]


def test_stop_deletes_the_job_in_the_foreground_and_reports_the_pods_exit(
    fake: FakeKubernetes, broker: Broker, claimed: FlowRun, handles: list[KubernetesHandle]
) -> None:
    handle, job, pod = running(fake, broker, claimed, handles)
    result: list[int] = []
    stopper = threading.Thread(target=lambda: result.append(handle.stop(5)))
    stopper.start()
    fake.wait_for(lambda: fake.requests("DELETE", "jobs"), "the DELETE")
    [delete] = fake.requests("DELETE", "jobs")
    assert delete.path == f"/apis/batch/v1/namespaces/runq/jobs/{job}"
    assert (
        delete.body["propagationPolicy"] == "Foreground" and delete.body["gracePeriodSeconds"] == 5
    )
    assert handle.poll() is None, "stopping is not stopped: the pod has its grace period"
    # The cluster: SIGTERM ends the container (the engine exits 130 here), then the Job goes.
    fake.put("pods", job_pod(job, pod, "Failed", exit_code=130))
    fake.close_log(pod)
    fake.wait_for(
        lambda: any(call.path.endswith(f"/pods/{pod}") for call in fake.calls), "the pod read"
    )
    fake.remove("pods", pod)
    fake.remove("jobs", job)
    stopper.join(10)
    assert result == [130] and handle.poll() == 130


def test_a_job_deleted_by_someone_else_is_reported_not_waited_for(
    fake: FakeKubernetes, broker: Broker, claimed: FlowRun, handles: list[KubernetesHandle]
) -> None:
    handle, job, pod = running(fake, broker, claimed, handles)
    fake.remove("pods", pod)
    fake.close_log(pod)
    fake.remove("jobs", job)
    wait_until(lambda: handle.poll() is not None, "the verdict")
    assert handle.poll() == -1 and "deleted before it finished" in handle.reason


def test_a_refused_job_is_an_infrastructure_error(
    fake: FakeKubernetes, broker: Broker, claimed: FlowRun, handles: list[KubernetesHandle]
) -> None:
    fake.refuse_create = (
        403,
        'jobs.batch is forbidden: User "system:serviceaccount:runq:x" cannot create',
    )
    with pytest.raises(InfrastructureError, match="403 .*jobs.batch is forbidden"):
        submit(fake, broker, claimed, handles)


def test_a_customization_that_does_not_apply_creates_nothing(
    fake: FakeKubernetes, broker: Broker, claimed: FlowRun, handles: list[KubernetesHandle]
) -> None:
    with pytest.raises(InfrastructureError, match="customizations"):
        submit(
            fake,
            broker,
            claimed,
            handles,
            customizations=[{"op": "remove", "path": "/spec/nothing"}],
        )
    assert not fake.requests("POST", "jobs")


# ---- generated Jobs -------------------------------------------------------------------


def a_run() -> FlowRun:
    return FlowRun.model_validate(
        {
            "id": "0b9c7d5e-7c2f-4a57-9a6f-3d5e8b1f2a44",
            "name": "brave-otter",
            "work_queue_name": "q",
            "deployment_id": "5d2a4c1e-0000-4000-8000-000000000001",
            "state": {"type": "PENDING", "name": "Pending", "timestamp": "2024-05-01T12:00:00Z"},
            "expected_start_time": "2024-05-01T12:00:00Z",
            "created": "2024-05-01T12:00:00Z",
        }
    )


SETTINGS_COMBOS = {
    "defaults": {},
    "everything": {
        "image": "registry.example.com/runq:1.2.3",
        "namespace": "flows",
        "command": ["python", "-m", "runq", "flow-run", "execute"],
        "env": {"LOG_LEVEL": "debug"},
        "labels": {"team": "data", "runq.io/flow-run-id": "spoofed"},
        "service_account_name": "flow-runner",
        "image_pull_policy": "Always",
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "node_selector": {"kubernetes.io/arch": "amd64"},
        "backoff_limit": 2,
        "ttl_seconds_after_finished": 600,
        "job_watch_timeout_seconds": 3600,
    },
    "customized": {
        "customizations": [
            {
                "op": "add",
                "path": "/spec/template/spec/tolerations",
                "value": [
                    {
                        "key": "dedicated",
                        "operator": "Equal",
                        "value": "flows",
                        "effect": "NoSchedule",
                    }
                ],
            },
            {
                "op": "add",
                "path": "/spec/template/spec/containers/0/env/-",
                "value": {"name": "ADDED", "value": "yes"},
            },
            {
                "op": "replace",
                "path": "/spec/template/spec/containers/0/image",
                "value": "runq:custom",
            },
            {"op": "add", "path": "/metadata/annotations/example.com~1owner", "value": "ops"},
            {"op": "test", "path": "/spec/backoffLimit", "value": 0},
        ],
    },
}


@pytest.mark.parametrize("combo", sorted(SETTINGS_COMBOS))
def test_generated_jobs_are_valid_kubernetes(combo: str) -> None:
    settings = Settings(**SETTINGS_COMBOS[combo])
    job = job_manifest(a_run(), settings, ENGINE_ENV)
    validate(job)
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == settings.backoff_limit
    assert job["metadata"]["namespace"] == settings.namespace
    assert job["spec"]["template"]["metadata"]["labels"] == job["metadata"]["labels"]


def test_a_job_carries_every_setting() -> None:
    settings = Settings(**SETTINGS_COMBOS["everything"])
    job = job_manifest(a_run(), settings, ENGINE_ENV)
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["name"] == "runq" and container["image"] == "registry.example.com/runq:1.2.3"
    assert container["command"] == ["python", "-m", "runq", "flow-run", "execute", str(a_run().id)]
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"] == settings.resources
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["LOG_LEVEL"] == "debug" and env["RUNQ_CLAIM_TOKEN"] == "1"
    assert pod["serviceAccountName"] == "flow-runner"
    assert pod["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    assert spec["backoffLimit"] == 2 and spec["ttlSecondsAfterFinished"] == 600
    assert spec["activeDeadlineSeconds"] == 3600
    labels = job["metadata"]["labels"]
    assert labels["team"] == "data"
    assert labels["runq.io/flow-run-id"] == str(a_run().id), "runq's own labels win"
    assert labels["runq.io/deployment-id"] == str(a_run().deployment_id)


def test_defaults_run_the_engine_with_no_deadline_and_no_ttl() -> None:
    job = job_manifest(a_run(), Settings(), {})
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command == ["runq", "flow-run", "execute", str(a_run().id)]
    assert (
        "activeDeadlineSeconds" not in job["spec"] and "ttlSecondsAfterFinished" not in job["spec"]
    )
    assert job["metadata"]["labels"]["runq.io/agent-id"] == ""


def test_customizations_apply_in_order() -> None:
    job = job_manifest(a_run(), Settings(**SETTINGS_COMBOS["customized"]), ENGINE_ENV)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "runq:custom"
    assert container["env"][-1] == {"name": "ADDED", "value": "yes"}
    assert job["metadata"]["annotations"]["example.com/owner"] == "ops"
    assert job["spec"]["template"]["spec"]["tolerations"][0]["key"] == "dedicated"


def test_job_names_are_unique_valid_and_name_the_run() -> None:
    names = {k8s.job_name(a_run()) for _ in range(50)}
    assert len(names) == 50
    for name in names:
        # The Job controller names pods <job>-<5 chars>: 63 characters at most.
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) + 6 <= 63
        assert name.startswith("runq-0b9c7d5e-")


def test_agent_ids_become_valid_label_values() -> None:
    assert k8s.label_value("agent-7f9c6d-xk2p-1-a1b2c3") == "agent-7f9c6d-xk2p-1-a1b2c3"
    odd = k8s.label_value("_my host/name:" + "x" * 80)
    assert re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", odd) and len(odd) <= 63
    job = job_manifest(a_run(), Settings(), {"RUNQ_AGENT_ID": "Agent on host.example.com!"})
    validate(job)


# ---- RFC 6902 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "patch, expected",
    [
        (
            [{"op": "add", "path": "/baz", "value": "qux"}],
            {"foo": "bar", "list": [1, 2], "baz": "qux"},
        ),
        ([{"op": "add", "path": "/list/1", "value": 9}], {"foo": "bar", "list": [1, 9, 2]}),
        ([{"op": "add", "path": "/list/-", "value": 3}], {"foo": "bar", "list": [1, 2, 3]}),
        ([{"op": "remove", "path": "/list/0"}], {"foo": "bar", "list": [2]}),
        ([{"op": "replace", "path": "/foo", "value": {"a": 1}}], {"foo": {"a": 1}, "list": [1, 2]}),
        ([{"op": "move", "from": "/foo", "path": "/moved"}], {"list": [1, 2], "moved": "bar"}),
        (
            [{"op": "copy", "from": "/list", "path": "/copy"}],
            {"foo": "bar", "list": [1, 2], "copy": [1, 2]},
        ),
        ([{"op": "test", "path": "/list/1", "value": 2}], {"foo": "bar", "list": [1, 2]}),
        (
            [{"op": "add", "path": "/a~1b~0c", "value": 1}],
            {"foo": "bar", "list": [1, 2], "a/b~c": 1},
        ),
    ],
)
def test_json_patch_operations(patch: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    document = {"foo": "bar", "list": [1, 2]}
    assert apply_json_patch(document, patch) == expected
    assert document == {"foo": "bar", "list": [1, 2]}, "the input is left alone"


@pytest.mark.parametrize(
    "operation, reason",
    [
        ({"op": "test", "path": "/foo", "value": "other"}, "test failed: '/foo' is not 'other'"),
        ({"op": "test", "path": "/missing", "value": 1}, "no member 'missing'"),
        ({"op": "remove", "path": "/missing"}, "no member 'missing'"),
        ({"op": "remove", "path": ""}, "cannot remove the whole document"),
        ({"op": "remove", "path": "/list/-"}, "'-' is not an array index"),
        ({"op": "replace", "path": "/missing", "value": 1}, "no member 'missing'"),
        ({"op": "replace", "path": "/list/2", "value": 1}, "index 2 is out of range"),
        ({"op": "add", "path": "/list/5", "value": 1}, "index 5 is out of range"),
        ({"op": "add", "path": "/missing/deeper", "value": 1}, "no member 'missing'"),
        ({"op": "add", "path": "/foo/x", "value": 1}, "the parent is not an object or an array"),
        ({"op": "add", "path": "/foo/x/y", "value": 1}, "cannot descend into str at 'x'"),
        ({"op": "add", "path": "no-slash", "value": 1}, "path 'no-slash' must start with '/'"),
        ({"op": "add", "path": "/list/01", "value": 1}, "'01' is not an array index"),
        ({"op": "add", "path": 5, "value": 1}, "'path' must be a string"),
        ({"op": "move", "from": "/list", "path": "/list/0"}, "cannot move a value into itself"),
        ({"op": "move", "from": "/list/0", "path": "/list/2"}, "index 2 is out of range"),
        ({"op": "copy", "from": "/nope", "path": "/copy"}, "no member 'nope'"),
        ({"op": "frobnicate", "path": "/foo"}, "unknown op 'frobnicate'"),
        ({"path": "/foo", "value": 1}, "unknown op None"),
        ({"op": "add", "path": "/foo"}, "missing 'value'"),
        ({"op": "add", "value": 1}, "missing 'path'"),
        ({"op": "copy", "path": "/foo"}, "missing 'from'"),
    ],
)
def test_json_patch_errors_name_the_operation(operation: dict[str, Any], reason: str) -> None:
    document = {"foo": "bar", "list": [1, 2]}
    patch = [{"op": "add", "path": "/ok", "value": 1}, operation]
    with pytest.raises(JsonPatchError) as raised:
        apply_json_patch(document, patch)
    assert str(raised.value) == f"customization #1 ({json.dumps(operation)}): {reason}"
    assert document == {"foo": "bar", "list": [1, 2]}, "all or nothing: the input is left alone"


# ---- cluster config -------------------------------------------------------------------


def kubeconfig(path: Path) -> Path:
    clusters = [
        {"name": name, "cluster": {"server": f"https://{name}.example.com:6443"}}
        for name in ("one", "two")
    ]
    contexts = [
        {"name": name, "context": {"cluster": name, "user": "me"}} for name in ("one", "two")
    ]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "one",
                "clusters": clusters,
                "contexts": contexts,
                "users": [{"name": "me", "user": {"token": "secret-token"}}],
            }
        )
    )
    return path


def test_kubeconfig_with_its_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    path = kubeconfig(tmp_path / "config")
    assert (
        api_client_for(Settings(kubeconfig=str(path))).configuration.host
        == "https://one.example.com:6443"
    )
    chosen = api_client_for(
        Settings(cluster_config="kubeconfig", kubeconfig=str(path), context="two")
    )
    assert chosen.configuration.host == "https://two.example.com:6443"
    with pytest.raises(InfrastructureError, match="kubeconfig"):
        api_client_for(Settings(kubeconfig=str(path), context="three"))


def test_in_cluster_when_the_pod_environment_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubernetes.config import incluster_config

    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("pod-token")
    ca.write_text("not really a certificate")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    configuration = api_client_for(Settings()).configuration  # auto
    assert configuration.host == "https://10.96.0.1:443"
    assert "pod-token" in str(configuration.api_key)
    token.unlink()
    with pytest.raises(InfrastructureError, match="in-cluster"):
        api_client_for(Settings(cluster_config="in-cluster"))


# ---- deploy/kubernetes ----------------------------------------------------------------


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


MANIFESTS = sorted(path.name for path in DEPLOY.glob("*.yaml") if path.name != "kustomization.yaml")


def manifest(kind: str, name: str) -> dict[str, Any]:
    for file in MANIFESTS:
        for doc in documents(DEPLOY / file):
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
    raise AssertionError(f"no {kind} {name} in deploy/kubernetes")


@pytest.mark.parametrize("file", MANIFESTS)
def test_every_shipped_manifest_is_valid_kubernetes(file: str) -> None:
    docs = documents(DEPLOY / file)
    assert docs
    for doc in docs:
        validate(doc)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "runq"


def test_the_kustomization_applies_every_manifest_but_the_secret_example() -> None:
    [kustomization] = documents(DEPLOY / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization" and kustomization["namespace"] == "runq"
    assert sorted(kustomization["resources"]) == sorted(set(MANIFESTS) - {"secret.example.yaml"})
    assert {"name": "runq", "newName": "runq", "newTag": "latest"} in kustomization["images"]
    images = {
        container["image"]
        for file in MANIFESTS
        for doc in documents(DEPLOY / file)
        if doc["kind"] in ("Deployment", "StatefulSet")
        for container in doc["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"runq:latest", "redis:7"}


def test_the_role_grants_exactly_what_the_agent_needs() -> None:
    assert role_rules() == {
        ("batch", "jobs", verb) for verb in ("create", "get", "list", "watch", "delete")
    } | {("", "pods", verb) for verb in ("get", "list", "watch")} | {("", "pods/log", "get")}
    binding = manifest("RoleBinding", "runq-agent")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "runq-agent",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "runq-agent", "namespace": "runq"}
    ]
    manifest("ServiceAccount", "runq-agent")


def test_the_agent_deployment() -> None:
    deployment = manifest("Deployment", "runq-agent")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert deployment["spec"]["replicas"] == 2 and pod["serviceAccountName"] == "runq-agent"
    command = container["command"]
    assert command[:3] == ["runq", "agent", "start"] and "--health-port" in command
    port = int(command[command.index("--health-port") + 1])
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
        assert container[probe]["httpGet"]["port"] in (port, "health")
    ports = [(item.get("name"), item["containerPort"]) for item in container["ports"]]
    assert ("health", port) in ports
    [api_url] = [item for item in container["env"] if item["name"] == "RUNQ_API_URL"]
    assert api_url["valueFrom"]["secretKeyRef"] == {"name": "runq-redis", "key": "url"}
    assert (
        container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    )


def test_the_secret_example_has_what_the_workloads_read() -> None:
    secret = manifest("Secret", "runq-redis")
    keys = set(secret["stringData"])
    workloads = (
        ("Deployment", "runq-agent"),
        ("Deployment", "runq-scheduler"),
        ("StatefulSet", "redis"),
    )
    for kind, name in workloads:
        for container in manifest(kind, name)["spec"]["template"]["spec"]["containers"]:
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "runq-redis" and ref["key"] in keys
    assert "redis.runq.svc" in secret["stringData"]["url"]


def test_the_scheduler_and_redis() -> None:
    scheduler = manifest("Deployment", "runq-scheduler")["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert scheduler["command"][:3] == ["runq", "scheduler", "start"]
    redis = manifest("StatefulSet", "redis")
    [container] = redis["spec"]["template"]["spec"]["containers"]
    args = " ".join(container["command"] + container.get("args", []))
    assert (
        "--appendonly yes" in args
        and "--maxmemory-policy noeviction" in args
        and "--dir /data" in args
    )
    [claim] = redis["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]
    service = manifest("Service", redis["spec"]["serviceName"])
    assert service["spec"]["selector"] == redis["spec"]["selector"]["matchLabels"]


# ---- the Redis URL: from a Secret, never a password in a plain value --------------------

WITH_PASSWORD = "redis://runq-engine:s3cret-pw@redis.runq.svc:6379/0"


def env_of(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job["spec"]["template"]["spec"]["containers"][0]["env"]


def test_the_job_reads_the_url_from_the_named_secret(
    fake: FakeKubernetes,
    broker: Broker,
    claimed: FlowRun,
    handles: list[KubernetesHandle],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the API server: the Job the agent creates carries a secretKeyRef, and the
    password appears nowhere in what was sent."""
    monkeypatch.setenv("RUNQ_KUBERNETES_URL_SECRET", "runq-redis")
    monkeypatch.setenv("RUNQ_KUBERNETES_URL_SECRET_KEY", "engine-url")
    infrastructure = KubernetesRunner(
        broker,
        Settings(namespace="runq", image="runq:test", stream_output=False),
        api_client=fake.api_client(),
    )
    handles.append(
        infrastructure.submit(claimed, None, {**ENGINE_ENV, "RUNQ_API_URL": WITH_PASSWORD})
    )
    [create] = fake.requests("POST", "jobs")
    validate(create.body)
    [url] = [item for item in env_of(create.body) if item["name"] == "RUNQ_API_URL"]
    assert url == {
        "name": "RUNQ_API_URL",
        "valueFrom": {"secretKeyRef": {"name": "runq-redis", "key": "engine-url"}},
    }
    assert "s3cret-pw" not in json.dumps(create.body)
    names = [item["name"] for item in env_of(create.body)]
    assert names.count("RUNQ_API_URL") == 1 and "RUNQ_AGENT_ID" in names


def test_the_secret_key_defaults_to_url_and_a_cluster_url_keeps_its_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNQ_KUBERNETES_URL_SECRET", "runq-redis")
    monkeypatch.delenv("RUNQ_KUBERNETES_URL_SECRET_KEY", raising=False)
    secret = k8s.url_secret_from_env()
    assert secret == ("runq-redis", "url")
    env = {**ENGINE_ENV, "RUNQ_API_URL": "redis+cluster://:pw@redis-0.redis:6379"}
    job = job_manifest(a_run(), Settings(), env, url_secret=secret)
    validate(job)
    values = {item["name"]: item.get("value") for item in env_of(job)}
    assert values["RUNQ_REDIS_CLUSTER"] == "1", "the Secret's URL may be a plain redis:// seed"
    assert "pw" not in json.dumps(env_of(job))
    # No URL handed in at all: the engine still gets it from the Secret.
    assert {
        "name": "RUNQ_API_URL",
        "valueFrom": {"secretKeyRef": {"name": "runq-redis", "key": "url"}},
    } in env_of(job_manifest(a_run(), Settings(), {}, url_secret=secret))


@pytest.mark.parametrize("url", [WITH_PASSWORD, "redis://redis.runq.svc:6379/0?password=s3cret-pw"])
def test_without_a_secret_a_password_is_refused_in_one_line(
    fake: FakeKubernetes,
    broker: Broker,
    claimed: FlowRun,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
) -> None:
    monkeypatch.delenv("RUNQ_KUBERNETES_URL_SECRET", raising=False)
    infrastructure = KubernetesRunner(
        broker, Settings(namespace="runq"), api_client=fake.api_client()
    )
    with pytest.raises(InfrastructureError) as caught:
        infrastructure.submit(claimed, None, {**ENGINE_ENV, "RUNQ_API_URL": url})
    message = str(caught.value)
    assert "RUNQ_KUBERNETES_URL_SECRET" in message and "has a password" in message
    assert "s3cret-pw" not in message and "\n" not in message
    assert not fake.requests("POST", "jobs"), "nothing was created"


def test_without_a_secret_a_url_with_no_password_stays_a_plain_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RUNQ_KUBERNETES_URL_SECRET", raising=False)
    assert k8s.url_secret_from_env() is None
    job = job_manifest(a_run(), Settings(), ENGINE_ENV)
    assert {"name": "RUNQ_API_URL", "value": ENGINE_ENV["RUNQ_API_URL"]} in env_of(job)


@pytest.mark.parametrize(
    "name, key", [("Runq_Redis", "url"), ("runq-redis", "a key"), ("-x", "url")]
)
def test_an_invalid_secret_name_or_key_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, name: str, key: str
) -> None:
    monkeypatch.setenv("RUNQ_KUBERNETES_URL_SECRET", name)
    monkeypatch.setenv("RUNQ_KUBERNETES_URL_SECRET_KEY", key)
    with pytest.raises(InfrastructureError, match="is not a valid Secret (name|key)"):
        k8s.url_secret_from_env()


def test_the_shipped_agent_hands_jobs_the_url_through_the_secret() -> None:
    container = manifest("Deployment", "runq-agent")["spec"]["template"]["spec"]["containers"][0]
    values = {item["name"]: item.get("value") for item in container["env"]}
    secret = manifest("Secret", values["RUNQ_KUBERNETES_URL_SECRET"])
    assert secret["metadata"]["namespace"] == "runq"
    assert values["RUNQ_KUBERNETES_URL_SECRET_KEY"] in secret["stringData"]
