"""Watch one flow run until it ends, printing each state change (``deployment run --watch``).

The watcher subscribes to the run's queue events channel (``runq:{q:NAME}:events``, where
every state change of a run is published) and reads the run again only when a message
about it (or about the queue) arrives, so it waits without polling Redis in a loop.
Pub/sub drops messages while the connection is down and a viewer's ACL may forbid
SUBSCRIBE, so it also reads the run every ``POLL_SECONDS`` whatever happens: a missed
message delays a line by at most that long, never loses it (the run's state history has
every transition).
"""

from __future__ import annotations

import time
from typing import Any

import click
import redis

from runq.broker import Broker, BrokerUnavailable, FlowRun, FlowRunNotFound, StateType
from runq.broker.backoff import Backoff
from runq.broker.states import State
from runq.broker.text import strip_controls

from .connection import say_recovered, sit_out

#: The longest a state change can wait to be printed when its event was missed.
POLL_SECONDS = 2.0

StateKey = tuple[str, str, str, str]


def watch_run(broker: Broker, run_id: str) -> int:
    """Print each state change of the run (time, state name, message) until it ends.

    Returns:
        0 when the run ended COMPLETED; 1 when it ended in another terminal state or was
        deleted while watched.
    """
    run = broker.read_flow_run(run_id)
    printed: list[StateKey] = []
    with _Events(broker, broker.keys.queue(run.work_queue_name).events, str(run.id)) as events:
        outage = Backoff(broker.url, cap=POLL_SECONDS)
        while True:
            try:
                run = broker.read_flow_run(str(run.id))  # after subscribing: nothing is missed
            except FlowRunNotFound:
                click.echo(f"Flow run {run.name!r} ({run.id}) was deleted.")
                return 1
            except BrokerUnavailable as error:
                sit_out(outage, error)
                continue
            say_recovered(outage)
            print_changes(run, printed)
            if run.state.is_terminal:
                return 0 if run.state.type is StateType.COMPLETED else 1
            events.wait(POLL_SECONDS)


def print_changes(run: FlowRun, printed: list[StateKey]) -> None:
    """Print the states of ``run`` not printed yet, oldest first, and remember them."""
    # The history ends with the current state (the script that changes one records the
    # other); a run written before histories existed has only its current state.
    history = list(run.state_history) or [run.state]
    for state in history:
        key = state_key(state)
        if key in printed:
            continue
        printed.append(key)
        click.echo(state_line(state))


def state_key(state: State) -> StateKey:
    stamp = state.timestamp.isoformat() if state.timestamp else ""
    return (state.type.value, state.name, stamp, state.message or "")


def state_line(state: State) -> str:
    """``14:02:07  Running  message``: local time, the state's name, its message."""
    stamp = state.timestamp.astimezone().strftime("%H:%M:%S") if state.timestamp else "--:--:--"
    message = strip_controls(state.message or "")
    return f"{stamp}  {state.name:<14} {message}".rstrip()


class _Events:
    """The queue's events channel, kept only for waking the watcher early.

    Any failure (connection lost, SUBSCRIBE forbidden) turns it into a plain
    ``POLL_SECONDS`` sleep until the next attempt to subscribe.
    """

    def __init__(self, broker: Broker, channel: str, run_id: str) -> None:
        self.broker, self.channel, self.run_id = broker, channel, run_id
        self.pubsub: Any = None
        self._subscribe()

    def __enter__(self) -> _Events:
        return self

    def __exit__(self, *_: object) -> None:
        self._close()

    def wait(self, timeout: float) -> None:
        """Return when a message that may concern the run arrives, or after ``timeout``."""
        if self.pubsub is None:
            time.sleep(timeout)
            self._subscribe()
            return
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                message = self.pubsub.get_message(timeout=left)
                if message and self._concerns_run(str(message.get("data", ""))):
                    self._drain()
                    return
        except (redis.RedisError, OSError):
            self._close()

    def _concerns_run(self, data: str) -> bool:
        """Messages about other runs of a busy queue do not wake this watcher."""
        kind, _, rest = data.partition(" ")
        if kind in ("run", "deleted") and rest:
            return rest.split(" ", 1)[0] == self.run_id
        return True

    def _drain(self) -> None:
        """Swallow what is already queued: one read of the run answers all of it."""
        while self.pubsub.get_message(timeout=0):
            pass

    def _subscribe(self) -> None:
        try:
            self.pubsub = self.broker.client.pubsub(ignore_subscribe_messages=True)
            self.pubsub.subscribe(self.channel)
        except (redis.RedisError, OSError):
            self._close()

    def _close(self) -> None:
        if self.pubsub is not None:
            try:
                self.pubsub.close()
            except (redis.RedisError, OSError):
                pass
        self.pubsub = None
