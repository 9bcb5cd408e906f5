"""runq's broker: the only code that talks to Redis.

``from broker import Broker`` is the typed API; the models and exceptions it uses are
re-exported here.
"""

from .api import Broker, BrokerSettings
from .errors import (
    AlreadyExists,
    BrokerUnavailable,
    DeploymentExists,
    DeploymentNotFound,
    FlowRunNotFound,
    InvalidInput,
    InvalidTransition,
    NotFound,
    RedisOutOfMemory,
    RunqError,
    StaleClaim,
    WorkQueueBusy,
    WorkQueueExists,
    WorkQueueNotFound,
)
from .models import (
    TERMINAL_STATES,
    Agent,
    Deployment,
    DeploymentSpec,
    DockerInfrastructure,
    FlowRun,
    FlowRunCreate,
    KubernetesInfrastructure,
    LogLine,
    ProcessInfrastructure,
    State,
    StateType,
    SweepResult,
    WorkQueue,
    claim_id_of,
)

__all__ = [
    "Agent",
    "AlreadyExists",
    "Broker",
    "BrokerSettings",
    "BrokerUnavailable",
    "Deployment",
    "DeploymentExists",
    "DeploymentNotFound",
    "DeploymentSpec",
    "DockerInfrastructure",
    "FlowRun",
    "FlowRunCreate",
    "FlowRunNotFound",
    "InvalidInput",
    "InvalidTransition",
    "KubernetesInfrastructure",
    "LogLine",
    "NotFound",
    "ProcessInfrastructure",
    "RedisOutOfMemory",
    "RunqError",
    "StaleClaim",
    "State",
    "StateType",
    "SweepResult",
    "TERMINAL_STATES",
    "WorkQueue",
    "WorkQueueBusy",
    "WorkQueueExists",
    "WorkQueueNotFound",
    "claim_id_of",
]
