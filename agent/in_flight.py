"""What an agent knows of one run it is responsible for: :class:`InFlight`.

Claiming creates these, watching updates and drops them; both halves of the agent share
this one record, so it lives on its own. :func:`describe_seconds` is here too: it words
the durations the agent logs about these runs (how late, how long past their end).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from runq.broker import Deployment, FlowRun, LimitSlot

from .infrastructure import Handle


@dataclass
class InFlight:
    """A run this agent claimed, or adopted, and has not seen end.

    An adopted run (``token`` None) was started by an agent that is gone: this agent
    watches its infrastructure and stops it when it is cancelled, but cannot write its
    state (only the claim's owner, its engine, can)."""

    run: FlowRun
    queue: str
    token: str | None
    deployment: Deployment | None = None
    handle: Handle | None = None
    #: A cancellation reached the agent (set once, under the agent's lock). Apart from
    #: ``stopper`` because it may come while ``handle`` is still None: the submission
    #: then starts the stop once it has the handle.
    cancel_requested: bool = False
    #: The one thread stopping its infrastructure (started once, under the agent's lock).
    stopper: threading.Thread | None = field(default=None, repr=False)
    ended_at: float | None = None  # when a heartbeat first said the run had ended
    #: The slots of named concurrency limits it holds (given back when it is forgotten).
    limit_slots: list[LimitSlot] = field(default_factory=list)
    #: When its timeout may have passed (monotonic), to ask Redis then (agent/timeouts.py).
    deadline_at: float | None = None


def describe_seconds(seconds: float) -> str:
    """``2h 3m 4s`` style, for messages people read."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s"]
    return " ".join(part for part in parts if part)
