"""Serving ``runq ui`` over uvicorn within bounds: how many connections it holds at once,
how long a client may take to send a request, and one log line per kind of overload.

uvicorn's own settings do what they can and are used: ``timeout_keep_alive`` closes idle
keep-alive connections, h11's ``max_incomplete_event_size`` bounds a request's headers,
``proxy_headers``/``forwarded_allow_ips`` name the client behind a trusted proxy. Two
bounds uvicorn lacks are added to its h11 protocol here, each for a reason its settings
cannot meet:

- A request timeout. uvicorn starts no timer before a request's headers arrive (its
  keep-alive timer runs only between requests, and any byte cancels it), so a client
  that sends its headers a byte at a time, or never, holds a connection and a file
  descriptor forever. Here a request must arrive whole, headers and body, within
  ``request_timeout`` seconds of the connection or of the previous response.
- A connection cap. ``limit_concurrency`` answers 503 to requests over its limit, but
  only once their headers arrive, on connections already accepted, and logs a line for
  each: slow clients still exhaust the descriptors, after which every accept fails.
  Here a connection beyond ``max_connections`` is answered 503 at once and closed, and
  the default cap leaves room under the process's descriptor limit (``ulimit -n``).

Overload (the cap reached, slow clients cut, uvicorn's warnings for malformed requests,
asyncio's failed accepts) is logged once per kind per minute, saying how many more there
were: an attack costs a few log lines, not one per connection.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("runq.ui")

#: Connections asyncio accepts in one go, before any of them is counted (its accept loop
#: takes up to the listen backlog at once): kept small, and counted in the reserve.
BACKLOG = 64
#: Descriptors kept for what is not a client: Redis connections (one per thread of the
#: pool at most, and the event subscription), the listening socket, stdio, the loop,
#: and a backlog's worth of connections accepted but not yet counted.
RESERVED_FDS = 64 + BACKLOG
#: The default cap when the descriptor limit allows more.
MAX_CONNECTIONS = 1024
REQUEST_TIMEOUT = 10.0
#: Seconds an idle keep-alive connection stays open (uvicorn's own setting).
KEEP_ALIVE_SECONDS = 5
#: Seconds during which further overload of one kind is counted, not logged.
OVERLOAD_LOG_INTERVAL = 60.0
#: uvicorn's and asyncio's lines that come once per connection under overload.
LOGGERS_TO_COLLAPSE = ("uvicorn.error", "asyncio")

FULL_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 44\r\nretry-after: 1\r\n\r\n"
    b"runq ui: too many connections, retry later.\n"
)


def descriptor_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def default_max_connections() -> int:
    """The cap: room for the reserved descriptors under ``ulimit -n``, at most 1024."""
    return max(8, min(MAX_CONNECTIONS, descriptor_limit() - RESERVED_FDS))


def check_max_connections(wanted: int) -> str | None:
    """Why ``wanted`` connections cannot be held by this process, or None."""
    limit = descriptor_limit()
    if wanted + RESERVED_FDS > limit:
        return (
            f"--max-connections {wanted} needs {wanted + RESERVED_FDS} open files, but this "
            f"process may open {limit} (ulimit -n): raise it or give at most "
            f"{max(1, limit - RESERVED_FDS)}."
        )
    return None


class Overloads:
    """Log a kind of overload once per interval; count the rest into the next line."""

    def __init__(self, interval: float = OVERLOAD_LOG_INTERVAL) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int]] = {}

    def admit(self, kind: str) -> tuple[bool, int]:
        """Whether a line of ``kind`` is logged now, and how many were held back before it."""
        now = time.monotonic()
        with self._lock:
            last, held = self._seen.get(kind, (None, 0))
            if last is not None and now - last < self.interval:
                self._seen[kind] = (last, held + 1)
                return False, held
            self._seen[kind] = (now, 0)
            return True, held

    def note(self, kind: str, message: str) -> None:
        admitted, held = self.admit(kind)
        if admitted:
            log.warning("%s%s", message, more(held, self.interval))


def more(held: int, interval: float) -> str:
    return f" ({held} more like it in the last {interval:g} s)" if held else ""


class OncePerKind(logging.Filter):
    """On uvicorn's and asyncio's loggers: a warning or error whose text (its template)
    came within the interval is counted, not written."""

    def __init__(self, overloads: Overloads) -> None:
        super().__init__()
        self.overloads = overloads

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        admitted, held = self.overloads.admit(f"{record.name}:{record.msg}")
        if admitted and held and isinstance(record.msg, str):
            record.msg += more(held, self.overloads.interval)  # holds no "%"
        return admitted


@dataclass(frozen=True)
class Bounds:
    max_connections: int
    request_timeout: float
    overloads: Overloads


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection cap and a request timeout (see above)."""

    bounds: ClassVar[Bounds]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._turned_away = False
        #: A response was sent and nothing has come since: an idle keep-alive connection.
        self._idle = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        bounds = self.bounds
        if len(self.connections) >= bounds.max_connections:
            self._turned_away = True
            bounds.overloads.note(
                "connections",
                (
                    f"runq ui: {bounds.max_connections} connections open (--max-connections): "
                    "new ones are answered 503 until some close"
                ),
            )
            transport.write(FULL_RESPONSE)
            transport.close()
            return
        super().connection_made(transport)
        self._settle()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._turned_away:
            return
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._turned_away:
            return
        self._idle = False
        super().data_received(data)
        self._settle()

    def on_response_complete(self) -> None:
        self._idle = True
        super().on_response_complete()
        self._settle()

    def _settle(self) -> None:
        """The timer runs while a request is on its way (never restarted by its bytes:
        a slow client cannot stretch it), and stops once the request is whole."""
        if self.transport is None or self.transport.is_closing():
            self._disarm()
        elif self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
            if self._deadline is None:
                self._deadline = self.loop.call_later(self.bounds.request_timeout, self._too_slow)
        else:
            self._disarm()

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport is None or self.transport.is_closing():
            return
        if not self._idle:  # an idle keep-alive connection is closed without a word
            self.bounds.overloads.note(
                "slow",
                (
                    f"runq ui: closed a connection whose request did not arrive within "
                    f"{self.bounds.request_timeout:g} s (--request-timeout)"
                ),
            )
        self.transport.close()


def protocol_for(bounds: Bounds) -> type[BoundedH11Protocol]:
    """The protocol class of one server (uvicorn builds it with its own arguments)."""
    return type("RunqH11Protocol", (BoundedH11Protocol,), {"bounds": bounds})


def serve(
    app: Any,
    sock: socket.socket,
    *,
    max_connections: int,
    request_timeout: float,
    grace_seconds: float,
) -> None:
    """Run ``app`` on ``sock`` until SIGINT/SIGTERM, within the bounds above."""
    import uvicorn

    overloads = Overloads()
    collapse = OncePerKind(overloads)
    for name in LOGGERS_TO_COLLAPSE:
        logging.getLogger(name).addFilter(collapse)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(grace_seconds),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        backlog=BACKLOG,
        http=protocol_for(Bounds(max_connections, request_timeout, overloads)),
    )
    uvicorn.Server(config).run(sockets=[sock])
