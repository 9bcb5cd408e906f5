"""The Job that runs a flow run: its container, env (the Redis URL from a Secret), labels,
and the operator's customizations (RFC 6902 JSON patches, applied by ``jsonpatch``)."""

from __future__ import annotations

import copy
import json
import math
import re
import secrets
from typing import Any

import jsonpatch
import jsonpointer

from runq.broker import FlowRun, KubernetesInfrastructure
from runq.broker.connection import is_cluster_url, mask_url
from runq.broker.settings import (
    AGENT_ID_ENV,
    setting,
)
from runq.broker.settings import (
    KUBERNETES_URL_SECRET_ENV as URL_SECRET_ENV,
)
from runq.broker.settings import (
    KUBERNETES_URL_SECRET_KEY_ENV as URL_SECRET_KEY_ENV,
)

from .. import (
    InfrastructureError,
)
from .. import (
    engine_command as shared_engine_command,
)
from .. import (
    run_labels as shared_labels,
)

CONTAINER = "runq"
DEFAULT_URL_SECRET_KEY = "url"
_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")

SecretRef = tuple[str, str]  # (Secret name, key)


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


def engine_command(run: FlowRun, settings: KubernetesInfrastructure) -> list[str]:
    return shared_engine_command(run, command=settings.command)


def run_labels(
    run: FlowRun, settings: KubernetesInfrastructure, env: dict[str, str]
) -> dict[str, str]:
    """The operator's labels plus runq's own (runq's win: the agent finds its Jobs by them)."""
    return {**settings.labels, **shared_labels(run, label_value(env.get(AGENT_ID_ENV, "")))}


def url_secret_from_env() -> SecretRef | None:
    """The Secret and key named by ``RUNQ_KUBERNETES_URL_SECRET`` (and ``..._KEY``), if set.

    Raises:
        InfrastructureError: the name or key is not one Kubernetes accepts.
    """
    name = (setting("kubernetes_url_secret") or "").strip()
    if not name:
        return None
    key = (setting("kubernetes_url_secret_key") or "").strip() or DEFAULT_URL_SECRET_KEY
    if len(name) > 253 or not _SECRET_NAME.fullmatch(name):
        raise InfrastructureError(f"{URL_SECRET_ENV} {name!r} is not a valid Secret name")
    if len(key) > 253 or not _SECRET_KEY.fullmatch(key):
        raise InfrastructureError(f"{URL_SECRET_KEY_ENV} {key!r} is not a valid Secret key")
    return name, key


def engine_variables(
    settings: KubernetesInfrastructure, env: dict[str, str], url_secret: SecretRef | None
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
    variables.setdefault(
        "RUNQ_API_URL", ""
    )  # its place in the list; its value comes from the Secret
    name, key = url_secret
    from_secret = {"secretKeyRef": {"name": name, "key": key}}
    return [
        {"name": var, "valueFrom": from_secret}
        if var == "RUNQ_API_URL"
        else {"name": var, "value": value}
        for var, value in variables.items()
    ]


def container_spec(
    run: FlowRun,
    settings: KubernetesInfrastructure,
    env: dict[str, str],
    url_secret: SecretRef | None = None,
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


#: Seconds a Job may run past its run's timeout before Kubernetes ends it: the agent stops
#: a timed-out run itself; the Job's own deadline (counted from the Job's start, image pull
#: and pod scheduling included) is only the backstop for when no agent is there.
TIMEOUT_BACKSTOP_MARGIN = 120


def timeout_backstop(run: FlowRun) -> int | None:
    """The Job's ``activeDeadlineSeconds`` for a run with a timeout (None without one)."""
    if run.timeout_seconds is None:
        return None
    return math.ceil(run.timeout_seconds) + TIMEOUT_BACKSTOP_MARGIN


def job_manifest(
    run: FlowRun,
    settings: KubernetesInfrastructure,
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
    deadlines = [settings.job_watch_timeout_seconds, timeout_backstop(run)]
    if any(deadline is not None for deadline in deadlines):
        spec["activeDeadlineSeconds"] = min(d for d in deadlines if d is not None)
    job: dict[str, Any] = {
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


# ---- the customizations: RFC 6902 JSON patches ----------------------------------------


class JsonPatchError(ValueError):
    """A customization that does not apply; the message names the operation."""


_OPERATIONS = ("add", "remove", "replace", "move", "copy", "test")  # RFC 6902's, no others
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


def apply_json_patch(document: dict[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    """``document`` with the RFC 6902 ``patch`` applied (all or nothing; the input is kept).

    jsonpatch applies each operation to a copy of the previous result, so the document is
    never half-patched and a failing operation is reported by its number, with the reason
    worked out on the document it failed on.

    Raises:
        JsonPatchError: ``customization #N ({operation}): reason``.
    """
    result: Any = copy.deepcopy(document)
    for number, operation in enumerate(patch):
        try:
            result = jsonpatch.JsonPatch([operation]).apply(result)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as error:
            reason = _explain(result, operation, error)
            raise JsonPatchError(
                f"customization #{number} ({json.dumps(operation)}): {reason}"
            ) from None
    if not isinstance(result, dict):  # {"op": "replace", "path": ""} with something else
        raise JsonPatchError(f"the patched document is a {type(result).__name__}, not an object")
    return result


def _explain(document: Any, operation: Any, error: Exception) -> str:
    """Why ``operation`` does not apply to ``document``, in one line.

    jsonpatch's and jsonpointer's own words (``InvalidJsonPatch``, ``JsonPatchConflict``,
    ``JsonPatchTestFailed``, ``JsonPointerException``...) vary between operations and may
    quote the whole document; these name the member, index or field at fault."""
    if not isinstance(operation, dict):
        return "an operation must be an object"
    op = operation.get("op")
    for field in ("path", "from"):
        pointer = operation.get(field)
        if field in operation and not isinstance(pointer, str):
            return f"{field!r} must be a string"
        if isinstance(pointer, str) and pointer and not pointer.startswith("/"):
            return f"path {pointer!r} must start with '/'"
    if "path" not in operation:
        return "missing 'path'"
    if op not in _OPERATIONS:
        return f"unknown op {op!r}"
    if op in ("add", "replace", "test") and "value" not in operation:
        return "missing 'value'"
    if op in ("move", "copy") and "from" not in operation:
        return "missing 'from'"
    path: str = operation["path"]
    target = document
    if op in ("move", "copy"):
        source: str = operation["from"]
        problem = _unreachable(document, source)
        if problem:
            return problem
        if op == "move":
            if path.startswith(source + "/"):
                return "cannot move a value into itself"
            if source == "":
                return "cannot remove the whole document"
            target = jsonpatch.JsonPatch([{"op": "remove", "path": source}]).apply(document)
    if op == "remove" and path == "":
        return "cannot remove the whole document"
    problem = _unreachable(target, path, insert=op in ("add", "move", "copy"))
    if problem:
        return problem
    if op == "test":
        return f"test failed: {path!r} is not {operation['value']!r}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _unreachable(document: Any, path: str, *, insert: bool = False) -> str | None:
    """Why ``path`` names no value in ``document`` (with ``insert``: no place to put one
    there), or None when it does."""
    tokens = jsonpointer.JsonPointer(path).parts
    node = document
    for depth, token in enumerate(tokens, 1):
        last = insert and depth == len(tokens)
        if isinstance(node, dict):
            if token not in node:
                return None if last else f"no member {token!r}"
            node = node[token]
        elif isinstance(node, list):
            if last and token == "-":
                return None
            if not _ARRAY_INDEX.fullmatch(token):
                return f"{token!r} is not an array index"
            index = int(token)
            if index > len(node) or (index == len(node) and not last):
                return f"index {index} is out of range"
            node = node[index] if index < len(node) else None
        elif last:
            return "the parent is not an object or an array"
        else:
            return f"cannot descend into {type(node).__name__} at {token!r}"
    return None
