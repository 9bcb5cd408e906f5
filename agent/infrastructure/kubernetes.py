"""Run the engine as a Kubernetes Job.

The agent creates a ``batch/v1`` Job whose one container runs ``runq flow-run execute
RUN_ID``, records ``namespace:job-name`` as the run's infrastructure id, and watches it
from a background thread: it waits for the pod (failing with the reason when the pod is
stuck on ImagePullBackOff, ErrImagePull, Unschedulable... past the pod watch timeout),
copies the pod's log into the run's log stream, watches the Job until it completes or
fails, and reads the container's exit code.

A watch that times out or loses its connection is resumed from the last
``resourceVersion`` it saw (re-listing only when the server says that version is gone):
nothing is ever concluded from a dropped connection, so a live Job is never reported as
ended. Cancelling deletes the Job with ``propagationPolicy: Foreground`` so its pod is
stopped (with the grace period) before the Job disappears.

The Redis URL reaches the Job through a Secret, never as a plain value: with
``RUNQ_KUBERNETES_URL_SECRET`` set (the shipped agent Deployment sets ``runq-redis``, key
``url``; ``RUNQ_KUBERNETES_URL_SECRET_KEY`` picks another key, e.g. one holding the
engine user's URL) the container's ``RUNQ_API_URL`` is a ``secretKeyRef``. Without it a
URL that carries no password is passed as is, and one that does is refused: anyone who
can read the Job (``kubectl get job -o yaml``) would read the password.

Every object is handled as plain JSON (``_preload_content=False``), which keeps this
module independent of the client's generated models, which change between releases.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
import secrets
import sys
import threading
import time
from calendar import timegm
from contextlib import closing
from typing import Any, Callable, Iterator

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from runq.broker import Broker, Deployment, FlowRun, KubernetesInfrastructure as Settings
from runq.broker.connection import is_cluster_url, mask_url
from runq.broker.text import strip_controls

from . import InfrastructureError

log = logging.getLogger("runq.agent.kubernetes")

CONTAINER = "runq"
LABEL_RUN = "runq.io/flow-run-id"
LABEL_DEPLOYMENT = "runq.io/deployment-id"
LABEL_AGENT = "runq.io/agent-id"
#: Pod states that will not fix themselves soon: reported once the pod watch timeout passes.
STUCK_REASONS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "Unschedulable",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
WATCH_SECONDS = 60  # server-side timeout of one watch request; it is then resumed
REQUEST_TIMEOUT = (10.0, 30.0)  # (connect, read) for plain requests
LOG_READ_TIMEOUT = 120.0  # a quiet flow's log stream is reopened this often
STOP_MARGIN_SECONDS = 3.0  # how long stop() waits beyond the grace period for the pod to end
EXIT_STOPPED = 143  # 128 + SIGTERM: what a stopped run reports when its pod said nothing
EXIT_NOT_STARTED = -1
#: The agent's settings naming the Secret (in the Job's namespace) that holds the URL the
#: engine connects with, and its key.
URL_SECRET_ENV = "RUNQ_KUBERNETES_URL_SECRET"
URL_SECRET_KEY_ENV = "RUNQ_KUBERNETES_URL_SECRET_KEY"
DEFAULT_URL_SECRET_KEY = "url"
_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")


# ---- the Job --------------------------------------------------------------------------


def label_value(text: str) -> str:
    """``text`` made a valid label value (63 chars of ``[A-Za-z0-9._-]``, alphanumeric ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


def job_name(run: FlowRun) -> str:
    """``runq-<8 hex of the run id>-<5 random>``: unique per attempt, short enough that the
    pod names Kubernetes derives from it stay valid."""
    suffix = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(5))
    return f"runq-{run.id.hex[:8]}-{suffix}"


def engine_command(run: FlowRun, settings: Settings) -> list[str]:
    if settings.command:
        return [*settings.command, str(run.id)]
    return ["runq", "flow-run", "execute", str(run.id)]


def run_labels(run: FlowRun, settings: Settings, env: dict[str, str]) -> dict[str, str]:
    """The operator's labels plus runq's own (runq's win: the agent finds its Jobs by them)."""
    return {
        **settings.labels,
        LABEL_RUN: str(run.id),
        LABEL_DEPLOYMENT: str(run.deployment_id or ""),
        LABEL_AGENT: label_value(env.get("RUNQ_AGENT_ID", "")),
    }


SecretRef = tuple[str, str]  # (Secret name, key)


def url_secret_from_env() -> SecretRef | None:
    """The Secret and key named by ``RUNQ_KUBERNETES_URL_SECRET`` (and ``..._KEY``), if set.

    Raises:
        InfrastructureError: the name or key is not one Kubernetes accepts.
    """
    name = os.environ.get(URL_SECRET_ENV, "").strip()
    if not name:
        return None
    key = os.environ.get(URL_SECRET_KEY_ENV, "").strip() or DEFAULT_URL_SECRET_KEY
    if len(name) > 253 or not _SECRET_NAME.fullmatch(name):
        raise InfrastructureError(f"{URL_SECRET_ENV} {name!r} is not a valid Secret name")
    if len(key) > 253 or not _SECRET_KEY.fullmatch(key):
        raise InfrastructureError(f"{URL_SECRET_KEY_ENV} {key!r} is not a valid Secret key")
    return name, key


def engine_variables(
    settings: Settings, env: dict[str, str], url_secret: SecretRef | None
) -> list[dict[str, Any]]:
    """The container's env: the Redis URL from the Secret when one is named, else as given
    as long as it carries no password (a plain value is readable by anyone who can read
    the Job).

    Raises:
        InfrastructureError: a password would be a plain value.
    """
    variables = {**settings.env, **env, "PYTHONUNBUFFERED": "1"}
    url = variables.get("RUNQ_API_URL")
    if url_secret is None:
        if url is not None and mask_url(url) != url:
            raise InfrastructureError(
                f"the Redis URL {mask_url(url)} has a password, which a Job would show in "
                f"plain text: set {URL_SECRET_ENV} to a Secret holding the URL (key "
                f"{URL_SECRET_KEY_ENV}, default {DEFAULT_URL_SECRET_KEY!r})"
            )
        return [{"name": name, "value": value} for name, value in variables.items()]
    if url is not None and is_cluster_url(url):
        variables.setdefault("RUNQ_REDIS_CLUSTER", "1")  # the Secret's URL may be redis://
    variables.setdefault("RUNQ_API_URL", "")  # its place in the list; its value comes from the Secret
    name, key = url_secret
    from_secret = {"secretKeyRef": {"name": name, "key": key}}
    return [
        {"name": var, "valueFrom": from_secret} if var == "RUNQ_API_URL" else {"name": var, "value": value}
        for var, value in variables.items()
    ]


def container_spec(
    run: FlowRun, settings: Settings, env: dict[str, str], url_secret: SecretRef | None = None
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": engine_command(run, settings),
        "env": engine_variables(settings, env, url_secret),
    }
    if settings.resources:
        container["resources"] = copy.deepcopy(settings.resources)
    return container


def job_manifest(
    run: FlowRun,
    settings: Settings,
    env: dict[str, str],
    name: str | None = None,
    *,
    url_secret: SecretRef | None = None,
) -> dict[str, Any]:
    """The Job that runs ``run`` (customizations applied); pure but for the random name.
    ``url_secret``: the (Secret, key) the container reads ``RUNQ_API_URL`` from.

    Raises:
        JsonPatchError: a customization does not apply to the Job.
        InfrastructureError: without ``url_secret``, the URL in ``env`` has a password.
    """
    labels = run_labels(run, settings, env)
    containers = [container_spec(run, settings, env, url_secret)]
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": containers}
    if settings.node_selector:
        pod_spec["nodeSelector"] = dict(settings.node_selector)
    if settings.service_account_name:
        pod_spec["serviceAccountName"] = settings.service_account_name
    spec: dict[str, Any] = {
        "backoffLimit": settings.backoff_limit,
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    if settings.ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = settings.ttl_seconds_after_finished
    if settings.job_watch_timeout_seconds is not None:
        spec["activeDeadlineSeconds"] = settings.job_watch_timeout_seconds
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name or job_name(run),
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": {"runq.io/flow-run-name": run.name},
        },
        "spec": spec,
    }
    return apply_json_patch(job, settings.customizations)


# ---- RFC 6902 JSON patch --------------------------------------------------------------


class JsonPatchError(ValueError):
    """A customization that does not apply; the message names the operation."""


def _pointer(path: str) -> list[str]:
    """RFC 6901: ``/a/b~1c`` -> ``["a", "b/c"]``."""
    if path == "":
        return []
    if not path.startswith("/"):
        raise JsonPatchError(f"path {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _index(container: list[Any], token: str, *, for_insert: bool) -> int:
    if for_insert and token == "-":
        return len(container)
    if not re.fullmatch(r"0|[1-9][0-9]*", token):
        raise JsonPatchError(f"{token!r} is not an array index")
    index = int(token)
    if index > len(container) or (index == len(container) and not for_insert):
        raise JsonPatchError(f"index {index} is out of range")
    return index


def _resolve(document: Any, tokens: list[str]) -> Any:
    for token in tokens:
        if isinstance(document, dict):
            if token not in document:
                raise JsonPatchError(f"no member {token!r}")
            document = document[token]
        elif isinstance(document, list):
            document = document[_index(document, token, for_insert=False)]
        else:
            raise JsonPatchError(f"cannot descend into {type(document).__name__} at {token!r}")
    return document


def _add(document: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _resolve(document, tokens[:-1])
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, tokens[-1], for_insert=True), value)
    else:
        raise JsonPatchError("the parent is not an object or an array")
    return document


def _remove(document: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise JsonPatchError("cannot remove the whole document")
    parent = _resolve(document, tokens[:-1])
    if isinstance(parent, dict):
        if tokens[-1] not in parent:
            raise JsonPatchError(f"no member {tokens[-1]!r}")
        return parent.pop(tokens[-1])
    if isinstance(parent, list):
        return parent.pop(_index(parent, tokens[-1], for_insert=False))
    raise JsonPatchError("the parent is not an object or an array")


def _apply_one(document: Any, operation: dict[str, Any]) -> Any:
    op, tokens = operation.get("op"), _pointer(str(operation.get("path", "")))
    if "path" not in operation:
        raise JsonPatchError("missing 'path'")
    if op in ("add", "replace", "test") and "value" not in operation:
        raise JsonPatchError("missing 'value'")
    if op in ("move", "copy") and "from" not in operation:
        raise JsonPatchError("missing 'from'")
    if op == "add":
        return _add(document, tokens, copy.deepcopy(operation["value"]))
    if op == "remove":
        _remove(document, tokens)
        return document
    if op == "replace":
        _resolve(document, tokens)  # the target must exist
        if not tokens:
            return copy.deepcopy(operation["value"])
        _remove(document, tokens)
        return _add(document, tokens, copy.deepcopy(operation["value"]))
    if op == "move":
        source = _pointer(operation["from"])
        if tokens[: len(source)] == source and tokens != source:
            raise JsonPatchError("cannot move a value into itself")
        return _add(document, tokens, _remove(document, source))
    if op == "copy":
        return _add(document, tokens, copy.deepcopy(_resolve(document, _pointer(operation["from"]))))
    if op == "test":
        if _resolve(document, tokens) != operation["value"]:
            raise JsonPatchError(f"test failed: {operation['path']!r} is not {operation['value']!r}")
        return document
    raise JsonPatchError(f"unknown op {op!r}")


def apply_json_patch(document: dict[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    """``document`` with the RFC 6902 ``patch`` applied (all or nothing; the input is kept)."""
    result: Any = copy.deepcopy(document)
    for number, operation in enumerate(patch):
        try:
            result = _apply_one(result, operation)
        except JsonPatchError as error:
            raise JsonPatchError(f"customization #{number} ({json.dumps(operation)}): {error}") from None
    return result


# ---- talking to the cluster -----------------------------------------------------------


def api_client_for(settings: Settings) -> client.ApiClient:
    """The one place that decides how to reach the cluster: in-cluster (the agent runs in a
    pod), a kubeconfig (with its context), or ``auto`` (in-cluster when the pod's
    ``KUBERNETES_SERVICE_HOST`` is set). Tests pass their own ApiClient instead."""
    mode = settings.cluster_config
    if mode == "auto":
        mode = "in-cluster" if os.environ.get("KUBERNETES_SERVICE_HOST") else "kubeconfig"
    configuration = client.Configuration()
    try:
        if mode == "in-cluster":
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=settings.kubeconfig,
                context=settings.context,
                client_configuration=configuration,
                persist_config=False,
            )
    except (ConfigException, OSError, ValueError, TypeError, KeyError) as error:
        raise InfrastructureError(f"cannot load the {mode} Kubernetes configuration: {error}") from None
    return client.ApiClient(configuration)


def api_message(error: ApiException) -> str:
    """``403 Forbidden: jobs.batch is forbidden: ...``: the server's own words."""
    detail = ""
    try:
        detail = json.loads(error.body or b"{}").get("message", "")
    except (ValueError, AttributeError):
        detail = ""
    return f"{error.status} {error.reason}" + (f": {detail}" if detail else "")


def describe(error: Exception) -> str:
    """One line for a log: the server's words for an API error, else the error itself."""
    return api_message(error) if isinstance(error, ApiException) else str(error)


def iter_lines(response: Any) -> Iterator[list[bytes]]:
    """The complete lines of a streamed response, one list per chunk received.

    A stream read to its end gives its connection back to the pool; one left early (or
    broken) is closed, since unread data would spoil the connection's next request."""
    pending, complete = b"", False
    try:
        for chunk in response.stream(amt=None, decode_content=False):
            *lines, pending = (pending + chunk).split(b"\n")
            if lines:
                yield lines
        if pending:
            yield [pending]
        complete = True
    finally:
        if complete:
            response.release_conn()
        else:
            response.close()


TRANSIENT = (urllib3.exceptions.HTTPError, OSError, ApiException)


class KubeApi:
    """The handful of calls the agent makes (exactly what deploy/kubernetes/rbac.yaml grants)."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace

    def create_job(self, job: dict[str, Any]) -> dict[str, Any]:
        response = self.batch.create_namespaced_job(
            self.namespace, job, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        )
        return json.loads(response.data)

    def delete_job(self, name: str, grace_seconds: int) -> None:
        body = {"propagationPolicy": "Foreground", "gracePeriodSeconds": grace_seconds}
        self.batch.delete_namespaced_job(
            name, self.namespace, body=body, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        ).release_conn()

    def read_pod(self, name: str) -> dict[str, Any]:
        response = self.core.read_namespaced_pod(
            name, self.namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        )
        return json.loads(response.data)

    def list(self, kind: str, selector: dict[str, str]) -> dict[str, Any]:
        response = self._lister(kind)(
            self.namespace, **selector, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        )
        return json.loads(response.data)

    def watch(self, kind: str, selector: dict[str, str], version: str, seconds: int) -> Any:
        """A raw watch response from ``version``, ended by the server after ``seconds``."""
        return self._lister(kind)(
            self.namespace,
            **selector,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=seconds,
            _preload_content=False,
            _request_timeout=(REQUEST_TIMEOUT[0], seconds + 30),
        )

    def pod_log(self, name: str, since_seconds: int | None) -> Any:
        extra = {"since_seconds": since_seconds} if since_seconds else {}
        return self.core.read_namespaced_pod_log(
            name,
            self.namespace,
            container=CONTAINER,
            follow=True,
            timestamps=True,
            **extra,
            _preload_content=False,
            _request_timeout=(REQUEST_TIMEOUT[0], LOG_READ_TIMEOUT),
        )

    def _lister(self, kind: str) -> Callable[..., Any]:
        return self.batch.list_namespaced_job if kind == "jobs" else self.core.list_namespaced_pod


class Backoff:
    """Waits between retries: 0.2 s doubling to 5 s, cut short when ``stop`` is set."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop, self.delay = stop, 0.2

    def wait(self) -> None:
        self.stop.wait(self.delay)
        self.delay = min(self.delay * 2, 5.0)

    def reset(self) -> None:
        self.delay = 0.2


class ObjectWatch:
    """The current objects of one kind matching a selector, kept by list-then-watch.

    ``snapshots()`` yields the objects (name -> object) after the first list, after every
    event, and whenever a watch request ends, so the caller can check its own deadlines.
    A watch that ends (server timeout) or breaks (dropped connection, read timeout, a
    5xx) is resumed from the last resourceVersion seen; only a 410 Gone (that version
    has been compacted away) makes it list again.
    """

    def __init__(
        self, api: KubeApi, kind: str, selector: dict[str, str], stop: threading.Event
    ) -> None:
        self.api, self.kind, self.selector, self.stop = api, kind, selector, stop
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = ""
        self.backoff = Backoff(stop)

    def snapshots(self, seconds: Callable[[], int]) -> Iterator[dict[str, dict[str, Any]]]:
        if not self._relist():
            return
        yield self.objects
        while not self.stop.is_set():
            try:
                response = self.api.watch(self.kind, self.selector, self.version, seconds())
                for lines in iter_lines(response):
                    for line in lines:
                        if self._apply(line):
                            yield self.objects
                self.backoff.reset()
            except _Gone:
                if not self._relist():
                    return
            except ApiException as error:
                if error.status != 410:
                    self._retry_later(error)
                elif not self._relist():
                    return
            except TRANSIENT as error:
                self._retry_later(error)
            if not self.stop.is_set():
                yield self.objects

    def _relist(self) -> bool:
        """List the objects afresh; False when told to stop first."""
        while not self.stop.is_set():
            try:
                listing = self.api.list(self.kind, self.selector)
            except TRANSIENT as error:
                self._retry_later(error)
                continue
            self.objects = {item["metadata"]["name"]: item for item in listing.get("items", [])}
            self.version = listing.get("metadata", {}).get("resourceVersion", "")
            return True
        return False

    def _apply(self, line: bytes) -> bool:
        """Fold one watch event into the objects; True when an object changed."""
        try:
            event = json.loads(line)
            kind, obj = event["type"], event["object"]
        except (ValueError, KeyError, TypeError):
            return False
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Gone()
            raise ApiException(status=obj.get("code", 500), reason=obj.get("message", "watch error"))
        self.version = obj.get("metadata", {}).get("resourceVersion") or self.version
        if kind == "BOOKMARK":
            return False
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self.objects.pop(name, None)
        else:
            self.objects[name] = obj
        return True

    def _retry_later(self, error: Exception) -> None:
        log.warning("Watching %s %s: %s; resuming.", self.kind, self.selector, describe(error))
        self.backoff.wait()


class _Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


# ---- reading pods and Jobs ------------------------------------------------------------


def runq_container_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == CONTAINER:
            return status
    return statuses[0] if statuses else {}


def pod_started(pod: dict[str, Any]) -> bool:
    """Its container runs or ran (or the pod ended): from here on it has a log and an end."""
    if pod.get("status", {}).get("phase") in ("Running", "Succeeded", "Failed"):
        return True
    state = runq_container_status(pod).get("state", {})
    return "running" in state or "terminated" in state


def stuck_reason(pod: dict[str, Any]) -> str | None:
    """``ImagePullBackOff: Back-off pulling image "x"`` when the pod waits on something
    that will not fix itself soon, else None."""
    waiting = runq_container_status(pod).get("state", {}).get("waiting", {})
    if waiting.get("reason") in STUCK_REASONS:
        return f"{waiting['reason']}: {waiting.get('message', '')}".rstrip(": ")
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            if condition.get("reason") in STUCK_REASONS:
                return f"{condition['reason']}: {condition.get('message', '')}".rstrip(": ")
    return None


def terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    return runq_container_status(pod).get("state", {}).get("terminated")


def job_outcome(job: dict[str, Any]) -> dict[str, Any] | None:
    """The Job's ``Complete`` or ``Failed`` condition once it has one, else None."""
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return condition
    return None


_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z")


def log_timestamp(text: str) -> tuple[int, int] | None:
    """``2024-05-01T12:00:00.5Z`` -> (epoch seconds, nanoseconds), comparable; None if not one."""
    match = _TIMESTAMP.fullmatch(text)
    if not match:
        return None
    seconds = timegm(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S"))
    return seconds, int((match.group(2) or "0").ljust(9, "0"))


# ---- the handle -----------------------------------------------------------------------


class KubernetesHandle:
    """A submitted Job and the thread that follows it to its end.

    ``poll()`` is None until the thread has a final status: the container's exit code, or
    -1 when the pod never started; ``reason`` then says why in words (the CRASHED message).
    """

    def __init__(
        self, api: KubeApi, job: dict[str, Any], run: FlowRun, broker: Broker, settings: Settings
    ) -> None:
        self.api, self.run, self.broker, self.settings = api, run, broker, settings
        self.job_name: str = job["metadata"]["name"]
        self.namespace = api.namespace
        self.infrastructure_id = f"{self.namespace}:{self.job_name}"
        self.reason: str | None = None
        self.exit_code: int | None = None
        self.pod_name: str | None = None
        self._pod_exit: dict[str, Any] | None = None  # the streamed pod's terminated state
        self._started_at = time.monotonic()
        self._done = threading.Event()
        self._quit = threading.Event()  # the thread stops watching (set once done, or detached)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._follow, name=f"runq-k8s-{self.job_name}", daemon=True
        )

    def start(self) -> "KubernetesHandle":
        self._thread.start()
        return self

    # ---- the Handle interface ---------------------------------------------------------

    def poll(self) -> int | None:
        return self.exit_code if self._done.is_set() else None

    def stop(self, grace_seconds: float) -> int:
        """Delete the Job (Foreground: its pod gets SIGTERM and ``grace_seconds`` before the
        Job goes); wait a little for the pod's own exit code, else report 143."""
        self._stopping.set()
        grace = max(0, math.ceil(grace_seconds))
        if not self._delete(grace):
            self._done.wait(grace + STOP_MARGIN_SECONDS)
            return self.exit_code if self._done.is_set() else EXIT_NOT_STARTED
        if not self._done.wait(grace + STOP_MARGIN_SECONDS):
            self._finish(EXIT_STOPPED, "stopped: the Job was deleted")
        return self.exit_code if self.exit_code is not None else EXIT_STOPPED

    def detach(self) -> None:
        """Stop following the Job and leave it running (an agent exiting without
        ``--kill-on-exit``; tests)."""
        self._quit.set()

    # ---- the background thread --------------------------------------------------------

    def _finish(self, code: int, reason: str | None) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self.exit_code, self.reason = code, reason
            self._done.set()
            self._quit.set()

    def _follow(self) -> None:
        try:
            pod = self._wait_for_pod()
            if pod is None:
                return
            self.pod_name = pod["metadata"]["name"]
            self._stream_logs(self.pod_name)
            self._wait_for_job()
        except Exception as error:  # a bug must not leave the run watched by nobody
            log.exception("Following Job %s failed", self.infrastructure_id)
            self._finish(EXIT_NOT_STARTED, f"lost track of Job {self.infrastructure_id}: {error}")

    def _pod_deadline_left(self) -> float:
        return self._started_at + self.settings.pod_watch_timeout_seconds - time.monotonic()

    def _wait_for_pod(self) -> dict[str, Any] | None:
        """The Job's first started pod; None (after finishing the handle) when it never starts."""
        watch = ObjectWatch(self.api, "pods", {"label_selector": f"job-name={self.job_name}"}, self._quit)

        def seconds() -> int:
            left = self._pod_deadline_left()
            return max(1, math.ceil(left)) if left > 0 else WATCH_SECONDS

        with closing(watch.snapshots(seconds)) as snapshots:
            for pods in snapshots:
                started = [pod for pod in pods.values() if pod_started(pod)]
                if started:
                    return min(started, key=lambda pod: pod["metadata"].get("creationTimestamp", ""))
                if self._pod_deadline_left() <= 0 and not self._stopping.is_set():
                    reason = self._not_started_reason(pods)
                    if reason:
                        self._give_up(reason)
                        return None
        return None

    def _not_started_reason(self, pods: dict[str, dict[str, Any]]) -> str | None:
        timeout = self.settings.pod_watch_timeout_seconds
        if not pods:
            return f"no pod was created for Job {self.infrastructure_id} within {timeout}s"
        for pod in pods.values():
            reason = stuck_reason(pod)
            if reason:
                return f"pod {pod['metadata']['name']} did not start within {timeout}s: {reason}"
        return None  # still pending for an ordinary reason (pulling a big image): keep waiting

    def _give_up(self, reason: str) -> None:
        """The pod will not start: delete the Job so it cannot start the run later."""
        log.error("Job %s: %s", self.infrastructure_id, reason)
        self._delete(0)
        self._finish(EXIT_NOT_STARTED, f"could not start: {reason}")

    def _delete(self, grace: int) -> bool:
        """Delete the Job (Foreground); True when it is gone or going."""
        for attempt in range(3):
            if attempt:
                time.sleep(0.5 * attempt)
            try:
                self.api.delete_job(self.job_name, grace)
                return True
            except ApiException as error:
                if error.status == 404:
                    return True
                log.warning("Deleting Job %s: %s", self.infrastructure_id, api_message(error))
            except TRANSIENT as error:
                log.warning("Deleting Job %s: %s", self.infrastructure_id, describe(error))
        return False

    # ---- logs -------------------------------------------------------------------------

    def _stream_logs(self, pod_name: str) -> None:
        """Echo the pod's log until its container ends (``stream_output``).

        A stream that breaks before the container ended is reopened from a minute before
        the last line stored (sinceSeconds; the margin absorbs clock skew); the reopened
        stream's lines stamped at or before that line are skipped, so none is stored twice."""
        last: tuple[int, int] | None = None
        backoff = Backoff(self._quit)
        while not self._quit.is_set():
            stored_before = last
            try:
                since = max(1, math.ceil(time.time() - last[0]) + 60) if last else None
                for lines in iter_lines(self.api.pod_log(pod_name, since)):
                    last = self._store(lines, stored_before) or last
                    backoff.reset()
            except TRANSIENT as error:
                log.info("Log stream of pod %s: %s", pod_name, describe(error))
            if self._container_ended(pod_name):
                return
            backoff.wait()

    def _store(self, raw_lines: list[bytes], after: tuple[int, int] | None) -> tuple[int, int] | None:
        """Store lines newer than ``after``; returns the newest timestamp stored."""
        lines, newest = [], None
        for raw in raw_lines:
            stamp_text, _, message = raw.decode("utf-8", "replace").rstrip("\r").partition(" ")
            stamp = log_timestamp(stamp_text)
            if stamp is None:
                message = f"{stamp_text} {message}" if message else stamp_text
            elif after is not None and stamp <= after:
                continue
            lines.append(message)
            newest = stamp or newest
        if lines:
            self._append(lines)
        return newest

    def _append(self, lines: list[str]) -> None:
        """Echo the pod's lines (``stream_output``). They are not stored from here: the
        engine in the pod ships its own output to the run's log, which so keeps flowing
        while this agent restarts."""
        if self.settings.stream_output:
            sys.stdout.write("".join(f"{self.run.name} | {strip_controls(line)}\n" for line in lines))
            sys.stdout.flush()

    def _container_ended(self, pod_name: str) -> bool:
        """Whether the log is complete: the container terminated, or the pod is gone."""
        try:
            pod = self.api.read_pod(pod_name)
        except ApiException as error:
            if error.status == 404:
                return True
            log.info("Reading pod %s: %s", pod_name, api_message(error))
            return False
        except TRANSIENT as error:
            log.info("Reading pod %s: %s", pod_name, describe(error))
            return False
        self._pod_exit = terminated(pod) or self._pod_exit
        return self._pod_exit is not None or pod.get("status", {}).get("phase") in ("Succeeded", "Failed")

    # ---- the Job's end ----------------------------------------------------------------

    def _wait_for_job(self) -> None:
        selector = {"field_selector": f"metadata.name={self.job_name}"}
        watch = ObjectWatch(self.api, "jobs", selector, self._quit)
        with closing(watch.snapshots(lambda: WATCH_SECONDS)) as snapshots:
            for jobs in snapshots:
                job = jobs.get(self.job_name)
                if job is None:
                    self._job_gone()
                    return
                outcome = job_outcome(job)
                if outcome is not None:
                    self._job_ended(outcome)
                    return

    def _job_ended(self, outcome: dict[str, Any]) -> None:
        ended = self._last_pod_exit() or self._pod_exit or {}
        code = ended.get("exitCode")
        if outcome["type"] == "Complete":
            self._finish(0 if code is None else int(code), None)
            return
        code = 1 if not code else int(code)
        words = ": ".join(part for part in (outcome.get("reason"), outcome.get("message")) if part)
        container = ": ".join(part for part in (ended.get("reason"), ended.get("message")) if part)
        reason = f"Job failed ({words})" if words else "Job failed"
        self._finish(code, f"{reason}; container: {container}" if container else reason)

    def _job_gone(self) -> None:
        code = (self._pod_exit or {}).get("exitCode")
        if self._stopping.is_set():
            self._finish(EXIT_STOPPED if code is None else int(code), "stopped: the Job was deleted")
        elif code is not None:
            self._finish(int(code), None)  # ended, then deleted (ttlSecondsAfterFinished)
        else:
            self._finish(EXIT_NOT_STARTED, f"Job {self.infrastructure_id} was deleted before it finished")

    def _last_pod_exit(self) -> dict[str, Any] | None:
        """The terminated state of the Job's newest ended pod (retries make several)."""
        try:
            pods = self.api.list("pods", {"label_selector": f"job-name={self.job_name}"}).get("items", [])
        except TRANSIENT as error:
            log.info("Listing pods of %s: %s", self.infrastructure_id, describe(error))
            return None
        ended = [pod for pod in pods if terminated(pod)]
        if not ended:
            return None
        newest = max(ended, key=lambda pod: pod["metadata"].get("creationTimestamp", ""))
        return terminated(newest)


class KubernetesInfrastructure:
    """Submits runs as Jobs. ``api_client`` is for tests (an API server fake); by default
    it is built from the settings' cluster config."""

    def __init__(
        self, broker: Broker, settings: Settings | None = None, api_client: client.ApiClient | None = None
    ) -> None:
        self.broker = broker
        self.settings = settings or Settings()
        self.api_client = api_client

    def submit(self, run: FlowRun, deployment: Deployment | None, env: dict[str, str]) -> KubernetesHandle:
        try:
            job = job_manifest(run, self.settings, env, url_secret=url_secret_from_env())
        except JsonPatchError as error:
            raise InfrastructureError(f"the Job's customizations do not apply: {error}") from None
        api = KubeApi(self.api_client or api_client_for(self.settings), self.settings.namespace)
        try:
            api.create_job(job)
        except ApiException as error:
            name = job["metadata"]["name"]
            raise InfrastructureError(f"Kubernetes refused Job {name}: {api_message(error)}") from None
        except (ValueError, TypeError) as error:  # the client's own models reject the Job
            raise InfrastructureError(f"invalid Job {job['metadata']['name']}: {error}") from None
        except TRANSIENT as error:
            raise InfrastructureError(f"cannot reach the Kubernetes API: {error}") from None
        return KubernetesHandle(api, job, run, self.broker, self.settings).start()
