"""The typed Python API over runq's Redis data: ``from runq.broker import Broker``.

Every state change of a queue or a run is one Lua script on that queue's slot (see
``broker/scripts``); the Broker validates input, picks keys, formats arguments and
decodes replies. Global indexes (queue names, run id -> queue, deployments, agents) are
written around the scripts, idempotently, in an order that never hides an accepted run:
an index entry is written before the record it points to, and a dangling one is
harmless.

The Broker is composed here from one class per concept, each over the shared core
(client, keys, scripts, settings; ``broker/core.py``), the way redis-py composes its
client from per-family command classes:

- ``work_queues.py``  create, read, list, pause/resume, limits, delete
- ``deployments.py``  deployment records and the schedules they hand the scheduler
- ``flow_runs.py``    create, read, list, preview, unschedule (storage in ``enqueue.py``)
- ``claims.py``       the agents' side: claim, states, infrastructure, cancel, heartbeats, sweep
- ``run_logs.py``     run logs within their byte budget
- ``registry.py``     the agents registry
- ``concurrency_limits.py``  named limits; ``limit_slots.py`` how runs take their slots
"""

from __future__ import annotations

from .checks import JSON as _JSON
from .checks import check_text, checked_name, checked_run_id, validated
from .claims import Claims
from .concurrency_limits import ConcurrencyLimits
from .core import RUN_QUEUE_CACHE, BrokerCore, names_redis_on_failure
from .deployments import Deployments
from .enqueue import CREATE_BATCH
from .flow_runs import MAX_PREVIEW_HOURS, FlowRuns
from .queue_settings import QueueSettings
from .registry import AgentRegistry
from .run_listing import MAX_LIST_LIMIT
from .run_logs import LOG_APPEND_BATCH_BYTES, LOG_APPEND_BATCH_LINES, RunLogs
from .settings import ENV_SETTINGS, BrokerSettings
from .work_queues import WorkQueues

__all__ = [
    "Broker",
    "BrokerCore",
    "BrokerSettings",
    "CREATE_BATCH",
    "ENV_SETTINGS",
    "LOG_APPEND_BATCH_BYTES",
    "LOG_APPEND_BATCH_LINES",
    "MAX_LIST_LIMIT",
    "MAX_PREVIEW_HOURS",
    "RUN_QUEUE_CACHE",
    "_JSON",
    "check_text",
    "checked_name",
    "checked_run_id",
    "names_redis_on_failure",
    "validated",
]


@names_redis_on_failure
class Broker(
    WorkQueues,
    QueueSettings,
    Deployments,
    FlowRuns,
    Claims,
    RunLogs,
    AgentRegistry,
    ConcurrencyLimits,
    BrokerCore,
):
    """runq's work queues, deployments, flow runs and agents on one Redis."""
