"""The pydantic models at runq's edges: what operators write and what the broker returns.

Validation lives here so that every entry point (Python API, CLI, YAML files) rejects the
same bad input with the same message, before anything touches Redis.

The checked field types (names, entrypoints, JSON objects, byte bounds) are in
``field_types.py``, the state types in ``states.py``, the infrastructures in
``infrastructure.py``; every name is importable from here as before.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticSerializationError

# The models' parts, each in a module of its own, importable from here as before:
from .field_types import (
    JSON_MAX_DEPTH,
    JSON_MAX_NODES,
    MAX_BOUND_BYTES,
    MAX_DEPLOYMENT_BYTES,
    MAX_PARAMETERS_BYTES,
    NAME_MAX_LENGTH,
    BoundBytes,
    Entrypoint,
    JsonObject,
    Name,
    RunName,
    Seconds,
    check_bytes,
    describe_bytes,
    infer_schedule_type,
    is_utf8,
    validate_entrypoint,
    validate_json_object,
    validate_name,
)
from .infrastructure import (
    DockerInfrastructure,
    Infrastructure,
    KubernetesInfrastructure,
    ProcessInfrastructure,
    PullPolicy,
)
from .schedule_models import Schedule  # not .schedules: engines never plan schedules
from .states import DEFAULT_FROM_STATES, TERMINAL_STATES, State, StateType

__all__ = [
    "Agent",
    "BoundBytes",
    "DEFAULT_FROM_STATES",
    "Deployment",
    "DeploymentSpec",
    "DockerInfrastructure",
    "Entrypoint",
    "FlowRun",
    "FlowRunCreate",
    "Infrastructure",
    "JSON_MAX_DEPTH",
    "JSON_MAX_NODES",
    "JsonObject",
    "KubernetesInfrastructure",
    "LogLine",
    "MAX_BOUND_BYTES",
    "MAX_DEPLOYMENT_BYTES",
    "MAX_PARAMETERS_BYTES",
    "MAX_START_IN_SECONDS",
    "NAME_MAX_LENGTH",
    "Name",
    "ProcessInfrastructure",
    "PullPolicy",
    "QueueAgent",
    "Seconds",
    "State",
    "StateType",
    "SweepResult",
    "TERMINAL_STATES",
    "Text",
    "WorkQueue",
    "check_bytes",
    "claim_id_of",
    "describe_bytes",
    "infer_schedule_type",
    "is_utf8",
    "validate_due_time",
    "validate_entrypoint",
    "validate_json_object",
    "validate_name",
]


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
    fair_by: str | None = Field(None, description="a tag key: due runs round-robin by value")
    created: datetime
    updated: datetime
    last_polled: datetime | None = None
    active_runs: int = Field(0, description="runs PENDING, RUNNING or CANCELLING")
    scheduled_runs: int = Field(0, description="runs SCHEDULED in its schedule (due or not)")
    late_runs: int = Field(
        0, description="SCHEDULED runs past their due time by the late threshold"
    )
    agents: list[QueueAgent] = Field(default_factory=list)


#: Characters a deployment's ``path`` may have (PATH_MAX on Linux).
MAX_PATH_CHARS = 4096


def _checked_path(value: str | None) -> str | None:
    """An absolute directory: the engine enters it wherever the agent runs."""
    if value is None:
        return None
    if not value.startswith("/"):
        raise ValueError(f"path must be an absolute directory, not {value[:100]!r}")
    if len(value) > MAX_PATH_CHARS or "\x00" in value or not is_utf8(value):
        raise ValueError(f"path must be at most {MAX_PATH_CHARS} characters of text")
    return value


def _checked_schema(value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
    """A valid JSON schema (checked when written; a record read back was checked then)."""
    if value is None or info.mode == "json":
        return value
    from .parameters import check_schema

    return check_schema(value)


CollisionStrategy = Literal["enqueue", "cancel-new", "cancel-in-progress"]


class DeploymentSpec(BaseModel):
    """What an operator writes to describe a deployment (CLI flags or a YAML file)."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    flow_name: str | None = None
    entrypoint: Entrypoint | None = None
    command: list[str] | None = None
    parameters: JsonObject = Field(default_factory=dict)
    work_queue_name: Name = "default"
    infrastructure: Infrastructure = Field(default_factory=ProcessInfrastructure)
    tags: list[str] = Field(default_factory=list)
    retries: NonNegativeInt = 0
    retry_delay_seconds: Seconds = 0
    description: str = ""
    schedule: Annotated[Schedule | None, BeforeValidator(infer_schedule_type)] = None
    is_schedule_active: bool = True
    skip_if_late_by_seconds: Seconds | None = Field(
        None, description="a run later than this when claimed is CANCELLED, not started"
    )
    timeout_seconds: Annotated[Seconds, Field(gt=0)] | None = Field(
        None, description="a run still RUNNING this long after it started is stopped, TimedOut"
    )
    concurrency_limit: Annotated[int, Field(ge=0, le=1_000_000)] | None = Field(
        None, description="at most this many of its runs in flight at once (a named limit)"
    )
    collision_strategy: CollisionStrategy = Field(
        "enqueue",
        description="a run due while the limit is full: enqueue (it waits), cancel-new (it "
        "ends CANCELLED) or cancel-in-progress (the oldest in flight is cancelled for it)",
    )
    path: Annotated[str | None, AfterValidator(_checked_path)] = Field(
        None,
        description="the directory the engine enters before importing (a relative "
        "entrypoint resolves against it); None: the infrastructure's working directory",
    )
    parameter_schema: Annotated[JsonObject | None, AfterValidator(_checked_schema)] = Field(
        None,
        description="JSON schema of the function's parameters, derived from its signature "
        "when the deployment was made; runs are checked against it before they exist",
    )

    @model_validator(mode="after")
    def _one_way_to_run(self) -> DeploymentSpec:
        if (self.entrypoint is None) == (self.command is None):
            raise ValueError("give exactly one of 'entrypoint' or 'command'")
        if self.command is not None and not self.command:
            raise ValueError("'command' must not be empty")
        if self.flow_name is None:
            self.flow_name = self.entrypoint.rsplit(":", 1)[1] if self.entrypoint else self.name
        return self

    @model_validator(mode="after")
    def _storable(self, info: ValidationInfo) -> DeploymentSpec:
        """Refuse what cannot be stored as JSON (a lone surrogate in any text field).

        A record read back from JSON (``model_validate_json``) was checked when written.
        """
        if info.mode == "json":
            return self
        try:
            self.model_dump_json()
        except PydanticSerializationError as error:
            reason = " ".join(str(error).removeprefix("Error serializing to JSON: ").split())
            raise ValueError(f"the deployment cannot be stored as JSON ({reason})") from None
        return self


class Deployment(DeploymentSpec):
    """A stored deployment: the spec plus its identity and timestamps.

    Unknown fields are ignored, not refused (a spec refuses them): an engine image of an
    older runq reads the records a newer one wrote during a rolling upgrade."""

    model_config = ConfigDict(extra="ignore")

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
    claim_token: str | None = Field(
        None,
        description="fencing token of the claim, only in the claim's own reply: the "
        "owner's writes present it; it is never stored",
        exclude=True,
        repr=False,
    )
    claim_id: str | None = Field(
        None, description="identifies the current claim (SHA-1 of its token) without revealing it"
    )
    claimed_at: datetime | None = None
    heartbeat_at: datetime | None = None
    timeout_seconds: float | None = Field(
        None,
        description="stopped and FAILED (TimedOut) if still RUNNING this long after it started",
    )
    awaiting_limit: str | None = Field(
        None, description="the concurrency limit it waits for (state AwaitingConcurrencySlot)"
    )
    awaiting_limit_value: str = Field("", description="the tag value it waits for (KEY:* limit)")
    result: Any = None
    state_history: list[State] = Field(
        default_factory=list,
        description="the run's last transitions, oldest first (read_flow_run fills it; "
        "listings leave it empty)",
    )

    def __eq__(self, other: object) -> bool:
        """Equal when every field but ``state_history`` is: a listing's row (which leaves
        the history out) equals the same run read whole."""
        if not isinstance(other, FlowRun):
            return NotImplemented
        mine = {k: v for k, v in self.__dict__.items() if k != "state_history"}
        theirs = {k: v for k, v in other.__dict__.items() if k != "state_history"}
        return mine == theirs

    __hash__ = None  # type: ignore[assignment]  # mutable, as every pydantic model

    def is_late(self, now: datetime, threshold_seconds: float) -> bool:
        """True for a run still SCHEDULED more than ``threshold_seconds`` past its due time."""
        return (
            self.state.type is StateType.SCHEDULED
            and (now - self.expected_start_time).total_seconds() > threshold_seconds
        )


#: The furthest ahead a run may be due: due times are stored as milliseconds and must
#: come back as datetimes (year 9999 at most).
MAX_START_IN_SECONDS = 1000 * 365 * 86400.0


def validate_due_time(moment: datetime | None) -> datetime | None:
    """A due time whose UTC instant a datetime can hold (years 1 to 9999)."""
    if moment is None or moment.tzinfo is None:
        return moment
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{moment.isoformat()} is out of range in UTC") from None
    return moment


def _text(value: str) -> str:
    """Text stored in Redis as UTF-8: a lone surrogate cannot be."""
    if not is_utf8(value):
        raise ValueError(f"{value!r} is not valid Unicode text (a lone surrogate)")
    return value


Text = Annotated[str, AfterValidator(_text)]


class FlowRunCreate(BaseModel):
    """One run to create: everything the caller may choose about it."""

    model_config = ConfigDict(extra="forbid")

    parameters: JsonObject = Field(default_factory=dict)
    deployment_id: UUID | None = None
    flow_name: Text | None = None
    name: RunName | None = None
    tags: list[Text] = Field(default_factory=list)
    idempotency_key: Annotated[Text, Field(min_length=1, max_length=512)] | None = None
    scheduled_start_time: Annotated[datetime | None, AfterValidator(validate_due_time)] = Field(
        None, description="absolute due time; None means now (judged by Redis' clock)"
    )
    start_in_seconds: Annotated[Seconds, Field(le=MAX_START_IN_SECONDS)] = Field(
        0, description="due this long after Redis' now, when no absolute time is given"
    )
    timeout_seconds: Annotated[Seconds, Field(gt=0)] | None = Field(
        None, description="its own timeout; None: its deployment's (if any)"
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
    at_limit: NonNegativeInt | None = Field(
        None,
        description="the agent's own --limit while it holds that many runs (it claims "
        "nothing until one ends); None while it has room",
    )


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
    timed_out: list[UUID] = Field(default_factory=list)  # past their timeout: TimedOut or retried


def claim_id_of(token: str) -> str:
    """The claim id a run record keeps for the claim whose fencing token is ``token``."""
    import hashlib

    return hashlib.sha1(token.encode()).hexdigest()
