"""What one agent counts about its work, as Prometheus metrics: :class:`AgentMetrics`.

The agent holds one as ``self.metrics`` and calls its hooks where things happen (a
claim, a submission, a run's end, a heartbeat, a Redis failure); ``/metrics`` on the
health port serves its registry. Each AgentMetrics has its own CollectorRegistry, never
prometheus_client's global one, so tests and several agents in one process never share
or clash on a series.

Labels are bounded: queue names, infrastructure types (process, docker, kubernetes),
final state types and a few fixed reasons; never a run id or a run name. Latencies come
from the Redis-clock timestamps on the run record (due time, claim time, start time), so
an agent's own clock never skews them. Built with ``enabled=False`` every hook is a
no-op and nothing is served (``--no-metrics``, ``RUNQ_AGENT_METRICS=false``): the
benchmark compares the claim path both ways.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from runq.broker import Deployment, FlowRun

#: Seconds from a run's due time to its claim: milliseconds when agents keep up, minutes
#: when a queue is backed up.
DUE_TO_CLAIMED_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
#: Seconds from the claim to RUNNING: a process starts in about a second, a container or
#: a Kubernetes Job (image pull, scheduling) in tens of seconds to minutes.
CLAIMED_TO_RUNNING_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
#: Why a heartbeat did not renew a claim (the ``reason`` label).
REFUSED_REASONS = ("error", "stale", "gone")
CONTENT_TYPE = CONTENT_TYPE_LATEST


def infrastructure_of(deployment: Deployment | None) -> str:
    """The ``infrastructure`` label: the deployment's infrastructure type (process when
    there is no deployment, as the agent runs such a run)."""
    return deployment.infrastructure.type if deployment is not None else "process"


class AgentMetrics:
    """Counters, gauges and histograms of one agent, on a registry of its own."""

    def __init__(self, *, enabled: bool = True, registry: CollectorRegistry | None = None) -> None:
        self.enabled = enabled
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._redis_down = False
        if not enabled:
            return
        r = self.registry
        self.claimed = Counter(
            "runq_agent_runs_claimed", "Runs this agent claimed.", ["queue"], registry=r
        )
        self.started = Counter(
            "runq_agent_runs_started",
            "Runs this agent submitted to their infrastructure.",
            ["queue", "infrastructure"],
            registry=r,
        )
        self.ended = Counter(
            "runq_agent_runs_ended",
            "Runs of this agent that ended, by final state type (SCHEDULED: sent back to wait, "
            "a retry).",
            ["queue", "infrastructure", "state"],
            registry=r,
        )
        self.in_flight = Gauge(
            "runq_agent_runs_in_flight",
            "Runs this agent claimed or watches and has not seen end.",
            registry=r,
        )
        self.due_to_claimed = Histogram(
            "runq_agent_due_to_claimed_seconds",
            "From a run's due time to its claim, by Redis' clock (0 for a run claimed early, "
            "within the prefetch).",
            ["queue"],
            buckets=DUE_TO_CLAIMED_BUCKETS,
            registry=r,
        )
        self.claimed_to_running = Histogram(
            "runq_agent_claimed_to_running_seconds",
            "From a run's claim (or its due time, when claimed early) to RUNNING, by Redis' "
            "clock; observed when the run ends.",
            ["queue", "infrastructure"],
            buckets=CLAIMED_TO_RUNNING_BUCKETS,
            registry=r,
        )
        self.submission_failures = Counter(
            "runq_agent_submission_failures",
            "Runs their infrastructure refused to start (ended CRASHED, saying why).",
            ["queue", "infrastructure"],
            registry=r,
        )
        self.redis_errors = Counter(
            "runq_agent_redis_errors",
            "Redis calls of this agent that failed, by operation.",
            ["operation"],
            registry=r,
        )
        self.redis_reconnects = Counter(
            "runq_agent_redis_reconnects", "Times Redis answered again after failing.", registry=r
        )
        self.heartbeats_refused = Counter(
            "runq_agent_heartbeats_refused",
            "Heartbeats that renewed no claim: error (Redis refused or unreachable), stale "
            "(the run was claimed again elsewhere), gone (the run was deleted).",
            ["reason"],
            registry=r,
        )
        self.last_heartbeat = Gauge(
            "runq_agent_last_heartbeat_timestamp_seconds",
            "Unix time of this agent's last successful heartbeat.",
            registry=r,
        )
        self.info = Info("runq_agent", "This agent's id and name.", registry=r)

    # ---- set-up ---------------------------------------------------------------------------

    def describe_agent(self, agent_id: str, name: str, in_flight: Callable[[], int]) -> None:
        """Name the agent and say how to count its runs in flight (read at each scrape)."""
        if self.enabled:
            self.info.info({"id": agent_id, "name": name})
            self.in_flight.set_function(lambda: float(in_flight()))

    # ---- hooks ------------------------------------------------------------------------------

    def run_claimed(self, queue: str, run: FlowRun) -> None:
        """A claim returned ``run``."""
        if not self.enabled:
            return
        self.claimed.labels(queue).inc()
        if run.claimed_at is not None:
            late = (run.claimed_at - run.expected_start_time).total_seconds()
            self.due_to_claimed.labels(queue).observe(max(0.0, late))

    def run_started(self, queue: str, deployment: Deployment | None) -> None:
        """The run's infrastructure accepted it."""
        if self.enabled:
            self.started.labels(queue, infrastructure_of(deployment)).inc()

    def submission_failed(self, queue: str, deployment: Deployment | None) -> None:
        """The run's infrastructure refused it (the run is CRASHED)."""
        if self.enabled:
            self.submission_failures.labels(queue, infrastructure_of(deployment)).inc()

    def run_ended(
        self, queue: str, deployment: Deployment | None, run: FlowRun, state: str | None = None
    ) -> None:
        """``run`` (as read after its infrastructure ended) ended in its own final state,
        or in ``state`` when the agent wrote it (CRASHED, CANCELLED); its claimed-to-running
        time is observed now, when the record has all three timestamps."""
        if not self.enabled:
            return
        infrastructure = infrastructure_of(deployment)
        self.ended.labels(queue, infrastructure, state or run.state.type.value).inc()
        if run.start_time is not None and run.claimed_at is not None:
            since = max(run.claimed_at, run.expected_start_time)
            wait = (run.start_time - since).total_seconds()
            self.claimed_to_running.labels(queue, infrastructure).observe(max(0.0, wait))

    def run_ended_as(self, queue: str, deployment: Deployment | None, state: str) -> None:
        """A run this agent ended itself before it ran (CANCELLED as too late or with its
        deployment gone, CRASHED when it could not start)."""
        if self.enabled:
            self.ended.labels(queue, infrastructure_of(deployment), state).inc()

    def redis_failed(self, operation: str) -> None:
        """A Redis call failed (``operation``: claim, heartbeat, sweep, state, read)."""
        if self.enabled:
            self.redis_errors.labels(operation).inc()
            self._redis_down = True

    def redis_answered(self) -> None:
        """A Redis call worked: after a failure, that is a reconnect."""
        if self.enabled and self._redis_down:
            self._redis_down = False
            self.redis_reconnects.inc()

    def heartbeat_refused(self, reason: str) -> None:
        """A heartbeat renewed nothing (``reason`` in :data:`REFUSED_REASONS`)."""
        if self.enabled:
            self.heartbeats_refused.labels(reason if reason in REFUSED_REASONS else "error").inc()

    def heartbeat_succeeded(self) -> None:
        if self.enabled:
            self.last_heartbeat.set_to_current_time()
            self.redis_answered()

    # ---- exposition -------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text format a scrape of ``/metrics`` gets."""
        return generate_latest(self.registry)
