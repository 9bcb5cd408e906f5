"""A submitted Job followed to its end: its pod awaited (or given up on when stuck), its
log echoed, its outcome read; stopped by deleting the Job (``propagationPolicy:
Foreground``, so the pod is stopped with the grace period before the Job disappears)."""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from contextlib import closing
from typing import Any

from kubernetes.client.exceptions import ApiException

from runq.broker import Broker, FlowRun, KubernetesInfrastructure
from runq.broker.text import strip_controls
from runq.engine.records import echo_format_is_json, echo_record

from .api import TRANSIENT, KubeApi, api_message, describe
from .manifest import CONTAINER
from .watch import WATCH_SECONDS, Objects, ObjectWatch, follow_log

log = logging.getLogger("runq.agent.kubernetes")

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
STOP_MARGIN_SECONDS = 3.0  # how long stop() waits beyond the grace period for the pod to end
EXIT_STOPPED = 143  # 128 + SIGTERM: what a stopped run reports when its pod said nothing
EXIT_NOT_STARTED = -1


# ---- reading pods and Jobs ------------------------------------------------------------


def runq_container_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses: list[dict[str, Any]] = pod.get("status", {}).get("containerStatuses") or []
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
    """The runq container's ``terminated`` state once it has ended, else None."""
    state: dict[str, Any] | None = runq_container_status(pod).get("state", {}).get("terminated")
    return state


def job_outcome(job: dict[str, Any]) -> dict[str, Any] | None:
    """The Job's ``Complete`` or ``Failed`` condition once it has one, else None."""
    conditions: list[dict[str, Any]] = job.get("status", {}).get("conditions") or []
    for condition in conditions:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return condition
    return None


# ---- the handle -----------------------------------------------------------------------


class KubernetesHandle:
    """A submitted Job and the thread that follows it to its end.

    ``poll()`` is None until the thread has a final status: the container's exit code, or
    -1 when the pod never started; ``reason`` then says why in words (the CRASHED message).
    """

    def __init__(
        self,
        api: KubeApi,
        job: dict[str, Any],
        run: FlowRun,
        broker: Broker,
        settings: KubernetesInfrastructure,
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
        self._json_echo = echo_format_is_json()
        self._done = threading.Event()
        self._quit = threading.Event()  # the thread stops watching (set once done, or detached)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._follow, name=f"runq-k8s-{self.job_name}", daemon=True
        )

    def start(self) -> KubernetesHandle:
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
            code = self.exit_code if self._done.is_set() else None
            return EXIT_NOT_STARTED if code is None else code
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
        watch = ObjectWatch(
            self.api, "pods", {"label_selector": f"job-name={self.job_name}"}, self._quit
        )

        def seconds() -> int:
            left = self._pod_deadline_left()
            return max(1, math.ceil(left)) if left > 0 else WATCH_SECONDS

        with closing(watch.snapshots(seconds)) as snapshots:
            for pods in snapshots:
                started = [pod for pod in pods.values() if pod_started(pod)]
                if started:
                    return min(
                        started, key=lambda pod: pod["metadata"].get("creationTimestamp", "")
                    )
                if self._pod_deadline_left() <= 0 and not self._stopping.is_set():
                    reason = self._not_started_reason(pods)
                    if reason:
                        self._give_up(reason)
                        return None
        return None

    def _not_started_reason(self, pods: Objects) -> str | None:
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
        """Echo the pod's log until its container ends (``stream_output``)."""
        follow_log(
            self.api, pod_name, self._quit, self._append, lambda: self._container_ended(pod_name)
        )

    def _append(self, lines: list[str]) -> None:
        """Echo the pod's lines (``stream_output``). They are not stored from here: the
        engine in the pod ships its own output to the run's log, which so keeps flowing
        while this agent restarts."""
        if not self.settings.stream_output:
            return
        if self._json_echo:  # --log-format json: one record a line (the pod's log mixes
            # its container's stdout and stderr: its stream is "pod")
            fields = {
                "run_id": str(self.run.id),
                "run_name": self.run.name,
                "queue": self.run.work_queue_name,
            }
            text = "".join(echo_record(strip_controls(line), "pod", fields) for line in lines)
        else:
            name = strip_controls(
                self.run.name
            )  # a name stored before control characters were refused
            text = "".join(f"{name} | {strip_controls(line)}\n" for line in lines)
        stdout = getattr(sys.stdout, "unwrapped", sys.stdout)  # records already
        stdout.write(text)
        stdout.flush()

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
        return self._pod_exit is not None or pod.get("status", {}).get("phase") in (
            "Succeeded",
            "Failed",
        )

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
            self._finish(
                EXIT_STOPPED if code is None else int(code), "stopped: the Job was deleted"
            )
        elif code is not None:
            self._finish(int(code), None)  # ended, then deleted (ttlSecondsAfterFinished)
        else:
            self._finish(
                EXIT_NOT_STARTED, f"Job {self.infrastructure_id} was deleted before it finished"
            )

    def _last_pod_exit(self) -> dict[str, Any] | None:
        """The terminated state of the Job's newest ended pod (retries make several)."""
        try:
            pods = self.api.list("pods", {"label_selector": f"job-name={self.job_name}"}).get(
                "items", []
            )
        except TRANSIENT as error:
            log.info("Listing pods of %s: %s", self.infrastructure_id, describe(error))
            return None
        ended = [pod for pod in pods if terminated(pod)]
        if not ended:
            return None
        newest = max(ended, key=lambda pod: pod["metadata"].get("creationTimestamp", ""))
        return terminated(newest)
