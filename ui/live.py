"""Live updates: the queues' pub/sub channels fanned out to browsers as server-sent events.

One thread per ``runq ui`` process pattern-subscribes to every queue's events channel
(``runq:{q:NAME}:events``: each run and queue change) and wake channel (new work, a freed
slot, a cancel), and hands each message to every open ``/api/events`` stream. On a Redis
Cluster a plain PUBLISH reaches every node, so one pattern subscription on one node sees
all queues. A page treats any event as "refresh the parts that show this queue", and a
``tick`` every few seconds refreshes what changes with time alone (late runs, last poll).
The browser's EventSource reconnects by itself after a dropped stream (``retry:``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

from runq.broker import Broker

log = logging.getLogger("runq.ui")
#: Seconds between ``tick`` events (keep-alive, and time-based refreshes).
TICK_SECONDS = 10.0
#: Events buffered per stream; a slower browser misses some but still refreshes.
BUFFER = 256
RETRY_MS = 1000


class EventHub:
    """The one subscription of this process and the streams listening to it."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        keys = broker.keys.queue("*")
        self.patterns = [keys.events, keys.wake]
        self.head = f"{broker.keys.prefix}:{{q:"
        self.tails = ("}:events", "}:wake")
        self._streams: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[dict[str, str]]]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._listen, name="runq-ui-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def queue_of(self, channel: str) -> str:
        """The queue name inside a channel name."""
        name = channel.removeprefix(self.head)
        for tail in self.tails:
            if name.endswith(tail):
                return name[: -len(tail)]
        return name

    def _listen(self) -> None:
        """Subscribe, forward, and after a lost connection subscribe again."""
        failing = False
        while not self._stop.is_set():
            pubsub: Any = None
            try:
                pubsub = self.broker.client.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(*self.patterns)
                if failing:
                    log.warning("runq ui: event subscription restored")
                    failing = False
                self.publish({"queue": "", "message": "reconnected"})
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "pmessage":
                        self.publish(
                            {
                                "queue": self.queue_of(str(message["channel"])),
                                "message": str(message["data"]),
                            }
                        )
            except Exception as error:  # Redis gone: say so once, retry every second
                if not failing:
                    log.warning("runq ui: event subscription lost (%s); retrying", error)
                    failing = True
                self._stop.wait(1.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        pass

    def publish(self, event: dict[str, str]) -> None:
        """Hand the event to every stream. A stream whose loop has closed (the server
        stopping) is dropped here: its RuntimeError must not reach ``_listen``, which
        would take it for a lost subscription and reconnect in a loop."""
        with self._lock:
            streams = list(self._streams)
        for entry in streams:
            loop, queue = entry
            try:
                loop.call_soon_threadsafe(_offer, queue, event)
            except RuntimeError:
                with self._lock:
                    self._streams.discard(entry)

    async def stream(self) -> AsyncIterator[str]:
        """One browser's event stream, as SSE text."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, str]] = asyncio.Queue(BUFFER)
        entry = (loop, queue)
        with self._lock:
            self._streams.add(entry)
        try:
            yield f"retry: {RETRY_MS}\nevent: hello\ndata: {{}}\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), TICK_SECONDS)
                except TimeoutError:
                    yield "event: tick\ndata: {}\n\n"
                    continue
                yield f"event: change\ndata: {json.dumps(event)}\n\n"
        finally:
            with self._lock:
                self._streams.discard(entry)


def _offer(queue: asyncio.Queue[dict[str, str]], event: dict[str, str]) -> None:
    """Put without blocking the hub: a full buffer drops the event (the page refreshes
    from the next one anyway)."""
    try:
        queue.put_nowait(event)
    except asyncio.QueueFull:
        pass
