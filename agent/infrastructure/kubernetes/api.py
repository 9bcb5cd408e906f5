"""Talking to the cluster: the API client (in-cluster or kubeconfig), the handful of calls
the agent makes, and how their errors read.

Every object is handled as plain JSON (``_preload_content=False``), which keeps runq
independent of the client's generated models, which change between releases.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from runq.broker import KubernetesInfrastructure

from .. import InfrastructureError
from .manifest import CONTAINER

# The client's config loaders carry no annotations.
_load_incluster_config: Callable[..., None] = config.load_incluster_config
_load_kube_config: Callable[..., None] = config.load_kube_config

REQUEST_TIMEOUT = (10.0, 30.0)  # (connect, read) for plain requests
LOG_READ_TIMEOUT = 120.0  # a quiet flow's log stream is reopened this often
#: What a request may fail with and be retried: the connection, or the server's answer.
TRANSIENT = (urllib3.exceptions.HTTPError, OSError, ApiException)


def api_client_for(settings: KubernetesInfrastructure) -> client.ApiClient:
    """The one place that decides how to reach the cluster: in-cluster (the agent runs in a
    pod), a kubeconfig (with its context), or ``auto`` (in-cluster when the pod's
    ``KUBERNETES_SERVICE_HOST`` is set). Tests pass their own ApiClient instead."""
    mode = settings.cluster_config
    if mode == "auto":
        mode = "in-cluster" if os.environ.get("KUBERNETES_SERVICE_HOST") else "kubeconfig"
    configuration = client.Configuration()
    try:
        if mode == "in-cluster":
            _load_incluster_config(client_configuration=configuration)
        else:
            _load_kube_config(
                config_file=settings.kubeconfig,
                context=settings.context,
                client_configuration=configuration,
                persist_config=False,
            )
    except (ConfigException, OSError, ValueError, TypeError, KeyError) as error:
        raise InfrastructureError(
            f"cannot load the {mode} Kubernetes configuration: {error}"
        ) from None
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


class KubeApi:
    """The handful of calls the agent makes (exactly what deploy/kubernetes/rbac.yaml grants).

    The generated APIs are typed ``Any`` here: with ``_preload_content=False`` they take
    and return raw JSON and urllib3 responses, not the models their annotations name."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.batch: Any = client.BatchV1Api(api_client)
        self.core: Any = client.CoreV1Api(api_client)
        self.namespace = namespace

    def create_job(self, job: dict[str, Any]) -> dict[str, Any]:
        response = self.batch.create_namespaced_job(
            self.namespace, job, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        )
        return _json_object(response.data)

    def delete_job(self, name: str, grace_seconds: int) -> None:
        body = {"propagationPolicy": "Foreground", "gracePeriodSeconds": grace_seconds}
        self.batch.delete_namespaced_job(
            name,
            self.namespace,
            body=body,
            _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT,
        ).release_conn()

    def read_pod(self, name: str) -> dict[str, Any]:
        response = self.core.read_namespaced_pod(
            name, self.namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        )
        return _json_object(response.data)

    def list(self, kind: str, selector: dict[str, str]) -> dict[str, Any]:
        response = self._lister(kind)(
            self.namespace, **selector, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        )
        return _json_object(response.data)

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
        """The raw, followed log of the pod's runq container (timestamped lines)."""
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
        lister: Callable[..., Any] = (
            self.batch.list_namespaced_job if kind == "jobs" else self.core.list_namespaced_pod
        )
        return lister


def _json_object(data: bytes) -> dict[str, Any]:
    """A response body that is a JSON object (every one the agent reads is)."""
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value
