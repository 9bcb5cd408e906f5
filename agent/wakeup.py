"""How an idle agent learns, within milliseconds, which of its queues has something to do.

Each queue has a channel every agent on it hears (``runq:{q:NAME}:wake``: "cancel ID",
"deleted", a queue change, and "wake" when no idle agent is registered) and, per agent,
a channel of its own (``runq:{q:NAME}:wake:AGENT_ID``): the scripts that make work
claimable wake one registered idle agent there rather than all of them (see
``wake_waiter`` in broker/scripts/include/wake.lua), so a run costs one claim, not one per
agent. A wake-up names its queue: the agent claims that queue, not all it serves.

Pub/sub works the same on one server and across a Redis Cluster; on a Redis 7 cluster
the channels are sharded (SSUBSCRIBE), so a queue's wake-ups stay on its node. A message
can be missed while the connection is down, so the agent also polls on a fixed, slow
interval; this listener only makes the common case fast.
"""

from __future__ import annotations

import logging
import queue as queue_module
import select
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from runq.broker import Broker
from runq.broker.backoff import Backoff
from runq.broker.scripts import uses_sharded_wakeups

log = logging.getLogger("runq.agent")

LISTEN_SECONDS = 0.5  # how often the listener looks at a change of its queues or a stop


def withdraw_waiting(broker: Broker, queues: Iterable[str], agent_id: str) -> None:
    """Take this agent out of its queues' waiters (it is at its own limit: a wake-up it
    cannot act on would hold up a run another agent could take). Its next claim with
    room to spare registers it again."""
    try:
        pipe = broker.client.pipeline(transaction=False)
        for name in queues:
            pipe.zrem(broker.keys.queue(name).waiters, agent_id)
        pipe.execute()
    except redis.RedisError as error:
        log.warning("Could not leave the waiters of its queues: %s", error)


@dataclass
class Woken:
    """What woke the agent: the queues named, or ``everything`` (a reconnect: anything
    published meanwhile was missed)."""

    queues: set[str] = field(default_factory=set)
    everything: bool = False

    def __bool__(self) -> bool:
        return self.everything or bool(self.queues)


class WakeUp:
    """A background subscription to the wake channels of the agent's queues."""

    def __init__(self, broker: Broker, agent_id: str, queues: Iterable[str]) -> None:
        self.broker = broker
        self.agent_id = agent_id
        self.signal = threading.Event()
        #: Set once the agent listens on every channel it was given (and while it does).
        self.subscribed = threading.Event()
        self.cancelled: queue_module.SimpleQueue[str] = queue_module.SimpleQueue()
        self._lock = threading.Lock()
        self._woken = Woken(everything=True)
        self._wanted: dict[str, str] = {}  # channel -> queue
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="runq-wakeup", daemon=True)
        self.set_queues(queues)

    def set_queues(self, queues: Iterable[str]) -> None:
        """Listen to these queues from now on (the listener applies it within a moment)."""
        wanted = {}
        for name in queues:
            keys = self.broker.keys.queue(name)
            wanted[keys.wake] = wanted[keys.wake_for(self.agent_id)] = name
        with self._lock:
            self._wanted = wanted

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def poke(self) -> None:
        """End the current wait at once (a stop request, a freed slot)."""
        self.signal.set()

    def wait(self, timeout: float) -> Woken:
        """Block until a wake-up or ``timeout`` seconds; what woke it (empty: nothing)."""
        self.signal.wait(max(0.0, timeout))
        self.signal.clear()
        with self._lock:
            woken, self._woken = self._woken, Woken()
        return woken

    def take_queues(self) -> set[str]:
        """The queues named by wake-ups since the last wait, without waiting (a long
        pass serves them between its own queues)."""
        with self._lock:
            queues, self._woken.queues = self._woken.queues, set()
        return queues

    def cancellations(self) -> list[str]:
        """Run ids whose cancellation was announced since the last call."""
        found = []
        while not self.cancelled.empty():
            found.append(self.cancelled.get_nowait())
        return found

    # ---- the listener thread ------------------------------------------------------------

    def _listen(self) -> None:
        channel: Subscription | None = None
        outage = Backoff(self.broker.url, first=0.5)
        while not self._stopped.is_set():
            try:
                if channel is None:
                    channel = Subscription(self.broker.client)
                    self._wake_everything()  # anything published while unsubscribed was missed
                    if back := outage.recovered():
                        log.info("Wake-up channel: %s", back)
                with self._lock:
                    wanted = set(self._wanted)
                channel.follow(wanted)
                self.subscribed.set()
                for name, data in channel.messages(LISTEN_SECONDS):
                    self._handle(name, data)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
                delay, notice = outage.failed(error)
                log.warning("Wake-up channel lost; polling meanwhile. %s", notice)
                self.subscribed.clear()
                if channel is not None:
                    channel.close()
                channel = None
                self._stopped.wait(delay)
        if channel is not None:
            channel.close()

    def _wake_everything(self) -> None:
        with self._lock:
            self._woken.everything = True
        self.signal.set()

    def _handle(self, channel: str, data: str) -> None:
        with self._lock:
            queue = self._wanted.get(channel)
            if queue is None:
                return  # a queue no longer served
            kind, _, run_id = data.partition(" ")
            if kind == "cancel" and run_id:
                self.cancelled.put(run_id)
            else:
                self._woken.queues.add(queue)
        self.signal.set()


class Subscription:
    """The agent's subscriptions on one connection (plain pub/sub), or on one per node
    (sharded pub/sub of a Redis 7 cluster); used by the listener thread only."""

    def __init__(self, client: Any) -> None:
        self.sharded = uses_sharded_wakeups(client)
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.channels: set[str] = set()

    def follow(self, wanted: set[str]) -> None:
        """Subscribe to the channels of ``wanted`` not yet followed, drop the others."""
        new, old = sorted(wanted - self.channels), sorted(self.channels - wanted)
        for start in range(0, len(new), 500):
            if self.sharded:
                self.pubsub.ssubscribe(*new[start : start + 500])
            else:
                self.pubsub.subscribe(*new[start : start + 500])
        if old:
            if self.sharded:
                self.pubsub.sunsubscribe(*old)
            else:
                self.pubsub.unsubscribe(*old)
        self.channels = set(wanted)

    def messages(self, timeout: float) -> list[tuple[str, str]]:
        """(channel, data) of the messages that arrive within ``timeout`` seconds."""
        if not self.sharded:
            first = self.pubsub.get_message(timeout=timeout)
            found = [first] if first else []
            while found and (more := self.pubsub.get_message(timeout=0)):
                found.append(more)
        else:
            found = self._sharded(timeout)
        return [
            (str(message["channel"]), str(message["data"]))
            for message in found
            if message.get("type") in ("message", "smessage")
        ]

    def _sharded(self, timeout: float) -> list[dict[str, Any]]:
        """Wait on every node's connection at once (redis-py polls them one by one)."""
        nodes = list(self.pubsub.node_pubsub_mapping.values())
        found = self._drain(nodes)
        if found or not nodes:
            if not nodes:
                self._stopped_wait(timeout)
            return found
        sockets = [
            node.connection._sock for node in nodes if node.connection and node.connection._sock
        ]
        if sockets:
            select.select(sockets, [], [], timeout)
        return self._drain(nodes)

    @staticmethod
    def _drain(nodes: list[Any]) -> list[dict[str, Any]]:
        found = []
        for node in nodes:
            while (message := node.get_message(timeout=0)) is not None:
                found.append(message)
        return found

    @staticmethod
    def _stopped_wait(timeout: float) -> None:
        threading.Event().wait(timeout)

    def close(self) -> None:
        try:
            self.pubsub.close()
        except Exception:  # closing a broken connection: nothing left to release
            pass
