"""Failed logins to ``runq ui``, counted per client in Redis, so guessing the token is
throttled across restarts and across every replica of the UI.

A client's failures are a counter ``runq:{ui}:login-failures:CLIENT`` that Redis expires
at the end of a window opened by the first failure (Redis' clock). Once it reaches the
allowed number, that client is refused every token check (the right token too, or a
guesser would only have to ignore the refusals) until the window ends. The ZSET
``runq:{ui}:login-clients`` (client -> window end, µs) bounds how many clients are
tracked: beyond ``max_clients`` the one whose window ends first is forgotten. CLIENT is
the SHA-256 of the address (fixed size), so the bytes are bounded too: ``max_clients`` x
~250 bytes. One hash tag ``{ui}``: one slot, each change one MULTI/EXEC.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import redis

from .core import BrokerCore, translated_failures
from .ui_sessions import digest, micros

#: Clients whose failures are tracked at once.
MAX_CLIENTS = 10_000


class Failures(NamedTuple):
    """A client's failed logins in the current window, and the seconds it has left."""

    attempts: int
    seconds_left: float


class LoginFailures:
    """Count, read and clear the failed logins of one client (an address)."""

    def __init__(
        self, core: BrokerCore, *, window_seconds: float, max_clients: int = MAX_CLIENTS
    ) -> None:
        self.core = core
        self.window_ms = max(1, int(window_seconds * 1000))
        self.max_clients = max_clients

    def _key(self, client: str) -> str:
        return self.core.keys.ui_login_prefix + digest(client)

    def current(self, client: str) -> Failures:
        """The failures of ``client`` in its current window (0 without one).

        Raises:
            BrokerUnavailable: Redis cannot be reached.
        """
        with translated_failures(self.core.url):
            pipe = self.core.client.pipeline(transaction=True)
            pipe.get(self._key(client))
            pipe.pttl(self._key(client))
            count, pttl = pipe.execute()
        if count is None or int(pttl) <= 0:
            return Failures(0, 0.0)
        return Failures(int(count), int(pttl) / 1000)

    def failed(self, client: str) -> Failures:
        """Count one more failure of ``client``; its window opens with its first.

        Raises:
            BrokerUnavailable: Redis cannot be reached or refused the write.
        """
        index = self.core.keys.ui_login_clients
        with translated_failures(self.core.url):
            now_us = micros(self.core.server_time())
            with self.core.client.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        return self._failed(pipe, index, client, now_us)
                    except redis.WatchError:  # another failure at the same moment: again
                        continue

    def _failed(self, pipe: Any, index: str, client: str, now_us: int) -> Failures:
        own, key = digest(client), self._key(client)
        pipe.watch(index)  # reads only until MULTI
        known = pipe.zscore(index, own) is not None
        live = int(pipe.zcount(index, f"({now_us}", "+inf"))
        over = live - (self.max_clients - 1) if not known else 0
        excess = (
            pipe.zrangebyscore(index, f"({now_us}", "+inf", start=0, num=over) if over > 0 else []
        )
        pipe.multi()
        pipe.zremrangebyscore(index, "-inf", now_us)
        if excess:
            prefix = self.core.keys.ui_login_prefix
            pipe.delete(*(prefix + item for item in excess))
            pipe.zrem(index, *excess)
        pipe.set(key, 0, px=self.window_ms, nx=True)  # the window opens with the first
        pipe.incr(key)
        pipe.pttl(key)
        pipe.zadd(index, {own: now_us + self.window_ms * 1000})  # never before the counter ends
        pipe.pexpire(index, self.window_ms)
        replies = pipe.execute()
        return Failures(int(replies[-4]), max(0, int(replies[-3])) / 1000)

    def cleared(self, client: str) -> None:
        """Forget ``client``'s failures (it logged in).

        Raises:
            BrokerUnavailable: Redis cannot be reached or refused the write.
        """
        with translated_failures(self.core.url):
            with self.core.client.pipeline(transaction=True) as pipe:
                pipe.delete(self._key(client))
                pipe.zrem(self.core.keys.ui_login_clients, digest(client))
                pipe.execute()

    def tracked(self) -> int:
        """Clients in the index (some windows may have just ended)."""
        with translated_failures(self.core.url):
            return int(self.core.client.zcard(self.core.keys.ui_login_clients))
