"""Names the agent and the engine share about a run's state, defined once.

``LIVE_STATES``: the states of a run whose infrastructure should be running (claimed,
started, or being cancelled). ``STALE`` and ``GONE`` are the heartbeat script's replies
for a claim lost to another owner and for a run that no longer exists
(broker/scripts/heartbeat.lua).
"""

from __future__ import annotations

from runq.broker import StateType

LIVE_STATES = frozenset({StateType.PENDING, StateType.RUNNING, StateType.CANCELLING})
#: The same states as the strings a heartbeat reply carries.
LIVE_STATE_VALUES = frozenset(state.value for state in LIVE_STATES)

#: Heartbeat replies other than a state type.
STALE = "STALE"
GONE = "GONE"
