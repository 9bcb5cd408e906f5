"""The pydantic models at runq's edges: what operators write and what the broker returns.

Validation lives here so that every entry point (Python API, CLI, YAML files) rejects the
same bad input with the same message, before anything touches Redis.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal, Union
from uuid import UUID, uuid4

from pydantic import (
    AfterValidator,
    BeforeValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    model_validator,
)

from .schedules import Schedule

NAME_MAX_LENGTH = 100
_FORBIDDEN_NAME_CHARACTERS = set("{}:")


def validate_name(value: str) -> str:
    """Check a queue or deployment name.

    Braces would break the ``{q:NAME}`` hash tag that keeps a queue's keys in one cluster
    slot, and ``:`` separates key segments, so all three are refused with control
    characters.
    """
    if not value or not value.strip():
        raise ValueError("a name must not be empty")
    if len(value) > NAME_MAX_LENGTH:
        raise ValueError(f"a name must be at most {NAME_MAX_LENGTH} characters")
    if not value.isprintable():
        raise ValueError("a name must not contain control characters")
    bad = sorted(_FORBIDDEN_NAME_CHARACTERS.intersection(value))
    if bad:
        raise ValueError(f"a name must not contain {' '.join(repr(c) for c in bad)}")
    return value


Name = Annotated[str, AfterValidator(validate_name)]

_MODULE_ENTRYPOINT = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
_PATH_ENTRYPOINT = re.compile(r"^[^:]+\.py:[A-Za-z_][\w]*$")


def validate_entrypoint(value: str) -> str:
    """Accept ``path/to/file.py:func`` or ``package.module:func``."""
    if _PATH_ENTRYPOINT.match(value) or _MODULE_ENTRYPOINT.match(value):
        return value
    raise ValueError(
        "an entrypoint must look like 'path/to/file.py:function' or 'package.module:function'"
    )


Entrypoint = Annotated[str, AfterValidator(validate_entrypoint)]


def infer_schedule_type(value: Any) -> Any:
    """Let a hand-written schedule omit ``type``: ``{cron: "0 * * * *"}`` is a cron."""
    if isinstance(value, dict) and "type" not in value:
        kinds = [kind for kind in ("cron", "interval", "rrule") if kind in value]
        if len(kinds) == 1:
            return {**value, "type": kinds[0]}
    return value


class StateType(str, Enum):
    """The state types of a flow run, as in Prefect."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def default_name(self) -> str:
        return self.value.capitalize()


TERMINAL_STATES = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
)

#: Where each state may be entered from when the caller names no from-states. PENDING is
#: absent on purpose: only the claim script makes a run PENDING.
DEFAULT_FROM_STATES: dict[StateType, frozenset[StateType]] = {
    StateType.RUNNING: frozenset({StateType.PENDING}),
    StateType.COMPLETED: frozenset({StateType.RUNNING}),
    StateType.FAILED: frozenset({StateType.PENDING, StateType.RUNNING}),
    StateType.CRASHED: frozenset(
        {StateType.PENDING, StateType.RUNNING, StateType.CANCELLING}
    ),
    StateType.CANCELLING: frozenset({StateType.RUNNING}),
    StateType.CANCELLED: frozenset(
        {StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING}
    ),
    StateType.SCHEDULED: frozenset(
        {StateType.PENDING, StateType.RUNNING, StateType.FAILED, StateType.CRASHED}
    ),
}


class State(BaseModel):
    """A flow run's state: the type drives behaviour, the name is for people."""

    type: StateType
    name: str
    timestamp: datetime | None = None
    message: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.type.is_terminal


class QueueAgent(BaseModel):
    """An agent that polled a work queue, and when it last did."""

    id: str
    last_polled: datetime


class WorkQueue(BaseModel):
    """A named channel between deployments and agents, with a limit and a pause flag."""

    id: UUID
    name: Name
    description: str = ""
    concurrency_limit: NonNegativeInt | None = None
    is_paused: bool = False
    created: datetime
    updated: datetime
    last_polled: datetime | None = None
    active_runs: int = Field(0, description="runs PENDING, RUNNING or CANCELLING")
    scheduled_runs: int = Field(0, description="runs SCHEDULED, due or not")
    late_runs: int = Field(0, description="SCHEDULED runs past their due time by the late threshold")
    agents: list[QueueAgent] = Field(default_factory=list)


class ProcessInfrastructure(BaseModel):
    """Run the flow as a local process of the agent's machine."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["process"] = "process"
    command: list[str] | None = Field(
        None,
        description="the engine command, the run id appended; default: the agent's "
        "Python running `runq flow-run execute`",
    )
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    stream_output: bool = True


PullPolicy = Literal["always", "if-not-present", "never"]


class DockerInfrastructure(BaseModel):
    """Run the flow in a Docker container (agent/infrastructure/docker.py)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["docker"] = "docker"
    image: str = "runq:latest"
    command: list[str] | None = Field(
        None, description="the engine command in the container, the run id appended"
    )
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    network: str | None = None
    network_mode: str | None = None
    volumes: list[str] = Field(default_factory=list, description="HOST:CONTAINER[:ro]")
    mem_limit: str | None = None
    auto_remove: bool = False
    image_pull_policy: PullPolicy = "if-not-present"
    stream_output: bool = True
    docker_url: str | None = Field(None, description="the engine's URL; default from DOCKER_HOST")


class KubernetesInfrastructure(BaseModel):
    """Run the flow as a Kubernetes Job (agent/infrastructure/kubernetes.py)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["kubernetes"] = "kubernetes"
    image: str = "runq:latest"
    namespace: str = "default"
    command: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    service_account_name: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    resources: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="requests / limits, as in a container spec"
    )
    node_selector: dict[str, str] = Field(default_factory=dict)
    backoff_limit: NonNegativeInt = 0
    ttl_seconds_after_finished: NonNegativeInt | None = None
    pod_watch_timeout_seconds: PositiveInt = 60
    job_watch_timeout_seconds: PositiveInt | None = None
    customizations: list[dict[str, Any]] = Field(
        default_factory=list, description="an RFC 6902 JSON patch applied to the Job"
    )
    cluster_config: Literal["auto", "in-cluster", "kubeconfig"] = "auto"
    kubeconfig: str | None = None
    context: str | None = None
    stream_output: bool = True


Infrastructure = Annotated[
    Union[ProcessInfrastructure, DockerInfrastructure, KubernetesInfrastructure],
    Field(discriminator="type"),
]


class DeploymentSpec(BaseModel):
    """What an operator writes to describe a deployment (CLI flags or a YAML file)."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    flow_name: str | None = None
    entrypoint: Entrypoint | None = None
    command: list[str] | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    work_queue_name: Name = "default"
    infrastructure: Infrastructure = Field(default_factory=ProcessInfrastructure)
    tags: list[str] = Field(default_factory=list)
    retries: NonNegativeInt = 0
    retry_delay_seconds: NonNegativeFloat = 0
    description: str = ""
    schedule: Annotated[Schedule | None, BeforeValidator(infer_schedule_type)] = None
    is_schedule_active: bool = True
    skip_if_late_by_seconds: NonNegativeFloat | None = Field(
        None, description="a run later than this when claimed is CANCELLED, not started"
    )

    @model_validator(mode="after")
    def _one_way_to_run(self) -> "DeploymentSpec":
        if (self.entrypoint is None) == (self.command is None):
            raise ValueError("give exactly one of 'entrypoint' or 'command'")
        if self.command is not None and not self.command:
            raise ValueError("'command' must not be empty")
        if self.flow_name is None:
            self.flow_name = (
                self.entrypoint.rsplit(":", 1)[1] if self.entrypoint else self.name
            )
        return self


class Deployment(DeploymentSpec):
    """A stored deployment: the spec plus its identity and timestamps."""

    id: UUID = Field(default_factory=uuid4)
    created: datetime
    updated: datetime


class FlowRun(BaseModel):
    """One run of a deployment (or a bare run) on a work queue."""

    id: UUID
    name: str
    work_queue_name: str
    deployment_id: UUID | None = None
    flow_name: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    state: State
    expected_start_time: datetime
    created: datetime
    start_time: datetime | None = None
    end_time: datetime | None = None
    agent_id: str | None = None
    infrastructure_id: str | None = None
    run_count: int = 0
    idempotency_key: str | None = None
    tags: list[str] = Field(default_factory=list)
    claim_token: int | None = Field(
        None, description="fencing token of the current claim; writes must present it"
    )
    claimed_at: datetime | None = None
    heartbeat_at: datetime | None = None
    result: Any = None

    def is_late(self, now: datetime, threshold_seconds: float) -> bool:
        """True for a run still SCHEDULED more than ``threshold_seconds`` past its due time."""
        return (
            self.state.type is StateType.SCHEDULED
            and (now - self.expected_start_time).total_seconds() > threshold_seconds
        )


class FlowRunCreate(BaseModel):
    """One run to create: everything the caller may choose about it."""

    model_config = ConfigDict(extra="forbid")

    parameters: dict[str, Any] = Field(default_factory=dict)
    deployment_id: UUID | None = None
    flow_name: str | None = None
    name: str | None = None
    tags: list[str] = Field(default_factory=list)
    idempotency_key: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    scheduled_start_time: datetime | None = Field(
        None, description="absolute due time; None means now (judged by Redis' clock)"
    )
    start_in_seconds: NonNegativeFloat = Field(
        0, description="due this long after Redis' now, when no absolute time is given"
    )
    auto_scheduled: bool = Field(False, description="made by the deployment's schedule")


class Agent(BaseModel):
    """A registered agent process."""

    id: str
    name: str
    work_queues: list[str] = Field(default_factory=list)
    hostname: str = ""
    pid: int | None = None
    started: datetime
    last_heartbeat: datetime


class LogLine(BaseModel):
    """One line a flow run printed (or the engine wrote about it)."""

    id: str = Field(description="the stream entry id: pass it back to read what follows")
    timestamp: datetime
    stream: Literal["stdout", "stderr", "engine"] = "stdout"
    message: str


class SweepResult(BaseModel):
    """What a sweep did: runs handed back to their queue, runs CRASHED, records purged."""

    requeued: list[UUID] = Field(default_factory=list)
    crashed: list[UUID] = Field(default_factory=list)
    cancelled: list[UUID] = Field(default_factory=list)
    purged: list[UUID] = Field(default_factory=list)
