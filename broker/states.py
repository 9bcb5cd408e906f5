"""Flow-run state types and states, and the transitions each target allows by default."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from pydantic import BaseModel

from .errors import InvalidInput


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
    def _missing_(cls, value: object) -> StateType:
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
#: The states of a run whose infrastructure should be running (claimed, started, or
#: being cancelled): the ones holding a slot.
LIVE_STATES = frozenset({StateType.PENDING, StateType.RUNNING, StateType.CANCELLING})
LIVE_STATE_VALUES = frozenset(state.value for state in LIVE_STATES)
#: The heartbeat script's replies other than a state type: the claim was lost to another
#: owner; the run no longer exists (broker/scripts/heartbeat.lua).
HEARTBEAT_STALE = "STALE"
HEARTBEAT_GONE = "GONE"

#: Where each state may be entered from when the caller names no from-states. PENDING is
#: absent on purpose: only the claim script makes a run PENDING.
DEFAULT_FROM_STATES: dict[StateType, frozenset[StateType]] = {
    StateType.RUNNING: frozenset({StateType.PENDING}),
    StateType.COMPLETED: frozenset({StateType.RUNNING}),
    StateType.FAILED: frozenset({StateType.PENDING, StateType.RUNNING}),
    StateType.CRASHED: frozenset({StateType.PENDING, StateType.RUNNING, StateType.CANCELLING}),
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
