"""Names of a run's states the agent reads, defined once in the broker
(``runq.broker.states``) and named here as the agent's code reads them."""

from __future__ import annotations

from runq.broker.states import (
    HEARTBEAT_GONE as GONE,
)
from runq.broker.states import (
    HEARTBEAT_STALE as STALE,
)
from runq.broker.states import (
    LIVE_STATE_VALUES,
    LIVE_STATES,
)

__all__ = ["GONE", "LIVE_STATES", "LIVE_STATE_VALUES", "STALE"]
