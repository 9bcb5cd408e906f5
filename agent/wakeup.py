"""How an idle agent learns, within milliseconds, that there is something to do.

Every script that creates work, frees a slot, resumes a queue, raises a limit or cancels a
run publishes on the queue's channel (``runq:{q:NAME}:wake``). Pub/sub works the same on
one server and across a Redis Cluster (unlike one blocking command spanning queues on
different nodes). A message can be missed while the connection is down, so the agent
also polls on a fixed, slow interval; this listener only makes the common case fast.
"""

from __future__ import annotations

import logging
import queue as queue_module
import threading

import redis

from runq.broker import Broker
from runq.broker.backoff import Backoff

log = logging.getLogger("runq.agent")


class WakeUp:
    """A background subscription to the wake channels of the agent's queues."""

    def __init__(self, broker: Broker, queues: list[str]) -> None:
        self.broker = broker
        self.channels = [broker.keys.queue(name).wake for name in queues]
        self.signal = threading.Event()
        self.cancelled: queue_module.SimpleQueue[str] = queue_module.SimpleQueue()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="runq-wakeup", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def wait(self, timeout: float) -> bool:
        """Block until a signal or ``timeout`` seconds; True when signalled."""
        fired = self.signal.wait(max(0.0, timeout))
        self.signal.clear()
        return fired

    def cancellations(self) -> list[str]:
        """Run ids whose cancellation was announced since the last call."""
        found = []
        while not self.cancelled.empty():
            found.append(self.cancelled.get_nowait())
        return found

    def _listen(self) -> None:
        pubsub = None
        outage = Backoff(self.broker.url, first=0.5)
        while not self._stopped.is_set():
            try:
                if pubsub is None:
                    pubsub = self.broker.client.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(*self.channels)
                    self.signal.set()  # anything published while unsubscribed was missed
                    if back := outage.recovered():
                        log.info("Wake-up channel: %s", back)
                message = pubsub.get_message(timeout=0.5)
                if message:
                    self._handle(message["data"])
            except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
                delay, notice = outage.failed(error)
                log.warning("Wake-up channel lost; polling meanwhile. %s", notice)
                pubsub = None
                self._stopped.wait(delay)
        if pubsub is not None:
            pubsub.close()

    def _handle(self, data: str) -> None:
        kind, _, run_id = data.partition(" ")
        if kind == "cancel" and run_id:
            self.cancelled.put(run_id)
        self.signal.set()
