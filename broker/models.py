"""The pydantic models at runq's edges: what operators write and what the broker returns.

Validation lives here so that every entry point (Python API, CLI, YAML files) rejects the
same bad input with the same message, before anything touches Redis.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Literal, Union
from uuid import UUID, uuid4

from pydantic import (
    AfterValidator,
    BeforeValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticSerializationError, to_json

from .errors import InvalidInput
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

#: Nesting and size bounds of JSON data (parameters): far beyond real use, well within
#: what the JSON encoders and pydantic's serializer (about 250 levels) accept.
JSON_MAX_DEPTH = 64
JSON_MAX_NODES = 100_000

#: Default byte bounds of what is stored, in bytes of the compact JSON runq stores: a
#: run's parameters (also a deployment's default parameters) and a whole deployment
#: record. ``BrokerSettings.max_parameters_bytes`` / ``max_deployment_bytes`` (variables
#: RUNQ_MAX_PARAMETERS_BYTES / RUNQ_MAX_DEPLOYMENT_BYTES) change them.
MAX_PARAMETERS_BYTES = 1_048_576
MAX_DEPLOYMENT_BYTES = 1_048_576
#: The largest bound a setting may hold: Redis refuses a longer string (proto-max-bulk-len).
MAX_BOUND_BYTES = 512 * 1024 * 1024
#: A byte bound setting: at least 1 byte, at most what Redis can store.
BoundBytes = Annotated[int, Field(ge=1, le=MAX_BOUND_BYTES)]


def describe_bytes(size: int) -> str:
    """``2,097,152 bytes``; an astronomical size (an alias bomb's) in scientific notation."""
    return f"{size:,} bytes" if size < 10**15 else f"{float(size):.1e} bytes"


def check_bytes(what: str, size: int, limit: int, variable: str, *, how: str = "") -> None:
    """Refuse ``size`` bytes over ``limit`` with one line: the size, the limit, the setting.

    ``what`` is the subject with its verb (``Parameters are``, ``The deployment is``);
    ``how`` qualifies the size (``at least``).

    Raises:
        InvalidInput: ``size > limit``; nothing has been written.
    """
    if size > limit:
        shown = f"{how} {describe_bytes(size)}" if how else describe_bytes(size)
        raise InvalidInput(
            f"{what} {shown} as JSON, over the limit of {limit:,} bytes "
            f"(raise it with {variable})."
        )


def _is_plain_json(value: Any) -> bool:
    """Check the bounds; True when ``value`` is JSON data already (nothing to convert).

    The walk is bounded in depth and in values visited, so a self-containing list or a
    YAML alias bomb is refused quickly (a cycle counts as too deep) instead of ending in
    a RecursionError or an endless walk. Runs are created by the thousand, so plain data
    (the usual case) is checked here without being serialized.
    """
    return _plain(value, 0, [JSON_MAX_NODES])


def _plain(item: Any, depth: int, budget: list[int]) -> bool:
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"JSON data must not hold more than {JSON_MAX_NODES} values")
    kind = type(item)
    if kind is str:
        return item.isascii() or is_utf8(item)
    if kind is int or kind is bool or item is None:
        return True
    if kind is float:
        return math.isfinite(item)
    if kind is dict:
        children, plain = item.values(), all(type(key) is str for key in item)
    elif kind in (list, tuple, set, frozenset):
        children, plain = item, kind is list
    else:
        return False  # a date, bytes, an object...: the serializer converts or refuses it
    if depth >= JSON_MAX_DEPTH:
        raise ValueError(f"JSON data must not be nested more than {JSON_MAX_DEPTH} levels deep")
    for child in children:
        plain = _plain(child, depth + 1, budget) and plain
    return plain


def is_utf8(text: str) -> bool:
    """False for a lone surrogate (how Python decodes bytes that are not UTF-8): Redis
    and JSON cannot be sent it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON data: numbers must be finite")


def validate_json_object(value: dict[str, Any]) -> dict[str, Any]:
    """Parameters as the JSON they are stored as, so what a flow gets is what was given.

    Dates, sets and tuples become strings and lists (as they always did when stored);
    NaN, infinities, undecodable bytes, lone surrogates, unknown objects, cycles and
    absurd nesting are refused here, before anything is written.
    """
    if _is_plain_json(value):
        return value
    try:
        return json.loads(to_json(value, inf_nan_mode="constants"), parse_constant=_refuse_constant)
    except PydanticSerializationError as error:
        reason = " ".join(str(error).removeprefix("Error serializing to JSON: ").split())
        raise ValueError(f"not JSON data ({reason})") from None


JsonObject = Annotated[dict[str, Any], AfterValidator(validate_json_object)]
#: A finite number of seconds >= 0 (JSON has no infinity: it would be stored as null).
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


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

    @classmethod
    def _missing_(cls, value: object) -> "StateType":
        """``StateType("bogus")`` is runq's InvalidInput (still a ValueError), one line."""
        names = ", ".join(state.value for state in cls)
        raise InvalidInput(f"Invalid state type {value!r}: use one of {names}.")

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
    customizations: list[JsonObject] = Field(
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

    @model_validator(mode="after")
    def _storable(self, info: ValidationInfo) -> "DeploymentSpec":
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
    result: Any = None

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
        moment.astimezone(timezone.utc)
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
    name: Text | None = None
    tags: list[Text] = Field(default_factory=list)
    idempotency_key: Annotated[Text, Field(min_length=1, max_length=512)] | None = None
    scheduled_start_time: Annotated[datetime | None, AfterValidator(validate_due_time)] = Field(
        None, description="absolute due time; None means now (judged by Redis' clock)"
    )
    start_in_seconds: Annotated[Seconds, Field(le=MAX_START_IN_SECONDS)] = Field(
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


def claim_id_of(token: str) -> str:
    """The claim id a run record keeps for the claim whose fencing token is ``token``."""
    import hashlib

    return hashlib.sha1(token.encode()).hexdigest()
