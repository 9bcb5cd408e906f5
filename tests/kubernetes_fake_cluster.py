"""The fake Kubernetes API server's "cluster": its object store and what a test does to it.

``FakeCluster`` holds the Jobs and pods with real resourceVersions and an event history,
the pod logs, the requests the agent made, and the switches a test flips to end, cut or
expire streams. ``job_pod`` builds a pod as the Job controller and the kubelet report it.
They live apart from the HTTP serving in tests/kubernetes_fake.py so that what a test
drives (the cluster's state) reads apart from how the agent sees it (the API
conversation); ``FakeKubernetes`` there serves this state and is what tests import.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


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


class FakeCluster:
    """The cluster state behind the fake API server, with the methods a test drives it by."""

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
