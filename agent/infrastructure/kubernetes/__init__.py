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
package independent of the client's generated models, which change between releases.

The package: ``manifest`` builds the Job (env, Secret reference, labels, the operator's
customizations as JSON patches); ``api`` talks to the cluster; ``watch`` keeps objects
current by list-then-watch and follows a pod's log; ``handle`` follows one Job to its
end; this module submits runs and re-exports the names other code uses.
"""

from __future__ import annotations

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from runq.broker import Broker, Deployment, FlowRun, KubernetesInfrastructure
from runq.broker.backoff import Backoff
from runq.broker.settings import (
    KUBERNETES_URL_SECRET_ENV as URL_SECRET_ENV,
)
from runq.broker.settings import (
    KUBERNETES_URL_SECRET_KEY_ENV as URL_SECRET_KEY_ENV,
)

from .. import LABEL_AGENT, LABEL_DEPLOYMENT, LABEL_RUN, InfrastructureError
from .api import (
    LOG_READ_TIMEOUT,
    REQUEST_TIMEOUT,
    TRANSIENT,
    KubeApi,
    api_client_for,
    api_message,
    describe,
)
from .handle import (
    EXIT_NOT_STARTED,
    EXIT_STOPPED,
    STOP_MARGIN_SECONDS,
    STUCK_REASONS,
    KubernetesHandle,
    job_outcome,
    pod_started,
    runq_container_status,
    stuck_reason,
    terminated,
)
from .manifest import (
    CONTAINER,
    DEFAULT_URL_SECRET_KEY,
    JsonPatchError,
    SecretRef,
    apply_json_patch,
    container_spec,
    engine_command,
    engine_variables,
    job_manifest,
    job_name,
    label_value,
    run_labels,
    url_secret_from_env,
)
from .watch import WATCH_SECONDS, ObjectWatch, iter_lines, log_timestamp

__all__ = [
    "CONTAINER",
    "DEFAULT_URL_SECRET_KEY",
    "EXIT_NOT_STARTED",
    "EXIT_STOPPED",
    "LABEL_AGENT",
    "LABEL_DEPLOYMENT",
    "LABEL_RUN",
    "LOG_READ_TIMEOUT",
    "REQUEST_TIMEOUT",
    "STOP_MARGIN_SECONDS",
    "STUCK_REASONS",
    "TRANSIENT",
    "URL_SECRET_ENV",
    "URL_SECRET_KEY_ENV",
    "WATCH_SECONDS",
    "Backoff",
    "JsonPatchError",
    "KubeApi",
    "KubernetesHandle",
    "KubernetesRunner",
    "ObjectWatch",
    "SecretRef",
    "api_client_for",
    "api_message",
    "apply_json_patch",
    "container_spec",
    "describe",
    "engine_command",
    "engine_variables",
    "iter_lines",
    "job_manifest",
    "job_name",
    "job_outcome",
    "label_value",
    "log_timestamp",
    "pod_started",
    "run_labels",
    "runq_container_status",
    "stuck_reason",
    "terminated",
    "url_secret_from_env",
]


class KubernetesRunner:
    """Submits runs as Jobs. ``api_client`` is for tests (an API server fake); by default
    it is built from the settings' cluster config."""

    def __init__(
        self,
        broker: Broker,
        settings: KubernetesInfrastructure | None = None,
        api_client: client.ApiClient | None = None,
    ) -> None:
        self.broker = broker
        self.settings = settings or KubernetesInfrastructure()
        self.api_client = api_client

    def submit(
        self, run: FlowRun, deployment: Deployment | None, env: dict[str, str]
    ) -> KubernetesHandle:
        try:
            job = job_manifest(run, self.settings, env, url_secret=url_secret_from_env())
        except JsonPatchError as error:
            raise InfrastructureError(f"the Job's customizations do not apply: {error}") from None
        api = KubeApi(self.api_client or api_client_for(self.settings), self.settings.namespace)
        try:
            api.create_job(job)
        except ApiException as error:
            name = job["metadata"]["name"]
            raise InfrastructureError(
                f"Kubernetes refused Job {name}: {api_message(error)}"
            ) from None
        except (ValueError, TypeError) as error:  # the client's own models reject the Job
            raise InfrastructureError(f"invalid Job {job['metadata']['name']}: {error}") from None
        except TRANSIENT as error:
            raise InfrastructureError(f"cannot reach the Kubernetes API: {error}") from None
        return KubernetesHandle(api, job, run, self.broker, self.settings).start()
