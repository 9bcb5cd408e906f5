"""``runq ui``'s login sessions, kept in Redis (the only store), so that logging out ends
a session on the server: a copied cookie stops working with it, and every replica of the
UI agrees.

A session is a STRING ``runq:{ui}:session:DIGEST`` that Redis itself expires after the
session's age (Redis' clock judges it, as it judges leases); DIGEST is the SHA-256 of the
id the cookie carries, so what Redis holds cannot be replayed as a cookie. The ZSET
``runq:{ui}:sessions`` (digest -> expiry, µs) orders them: opening one beyond
``max_sessions`` ends the one closest to its end, and expired entries are dropped as new
ones come. Every entry has a fixed size (a 64-character digest and a 16-digit time), so
the sessions take at most ``max_sessions`` x ~250 bytes of Redis. All keys share the
hash tag ``{ui}``: one cluster slot, so each change is one MULTI/EXEC.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import redis

from .core import BrokerCore, translated_failures

#: Sessions kept at once; one more ends the oldest (a UI shared by a team, not a site).
MAX_SESSIONS = 1000


def micros(moment: datetime) -> int:
    """A time as integer microseconds since the epoch (the sessions' scores)."""
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def digest(secret: str) -> str:
    """What Redis keeps of a session id or of a client's address: its SHA-256, in hex."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


class UISessions:
    """Open, check and end the UI's sessions."""

    def __init__(self, core: BrokerCore, *, max_sessions: int = MAX_SESSIONS) -> None:
        self.core = core
        self.max_sessions = max_sessions

    def _key(self, session_id: str) -> str:
        return self.core.keys.ui_session_prefix + digest(session_id)

    def open(self, session_id: str, age_seconds: float) -> None:
        """Start session ``session_id``, alive for ``age_seconds`` (Redis' clock).

        Raises:
            BrokerUnavailable: Redis cannot be reached or refused the write.
        """
        index = self.core.keys.ui_sessions
        age_us = max(1000, int(age_seconds * 1_000_000))
        with translated_failures(self.core.url):
            now_us = micros(self.core.server_time())
            with self.core.client.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        self._open(pipe, index, digest(session_id), now_us, now_us + age_us)
                        return
                    except redis.WatchError:  # another login at the same moment: again
                        continue

    def _open(self, pipe: Any, index: str, own: str, now_us: int, expiry: int) -> None:
        """One attempt, under WATCH of the index, so the count never passes the bound."""
        pipe.watch(index)  # reads only until MULTI: a write of our own would abort it
        live = int(pipe.zcount(index, f"({now_us}", "+inf"))
        over = live - (self.max_sessions - 1)  # room for this one
        excess = (
            pipe.zrangebyscore(index, f"({now_us}", "+inf", start=0, num=over) if over > 0 else []
        )
        last = pipe.zrange(index, -1, -1, withscores=True)
        pipe.multi()
        pipe.zremrangebyscore(index, "-inf", now_us)  # ended by Redis already
        prefix = self.core.keys.ui_session_prefix
        if excess:
            pipe.delete(*(prefix + item for item in excess))
            pipe.zrem(index, *excess)
        pipe.set(prefix + own, str(now_us), px=max(1, (expiry - now_us) // 1000))
        pipe.zadd(index, {own: expiry})
        pipe.pexpireat(index, max([expiry, *(int(score) for _, score in last)]) // 1000 + 1)
        pipe.execute()

    def alive(self, session_id: str) -> bool:
        """Whether ``session_id`` is a session not yet ended (logout, age, or the bound).

        Raises:
            BrokerUnavailable: Redis cannot be reached.
        """
        with translated_failures(self.core.url):
            return bool(self.core.client.exists(self._key(session_id)))

    def close(self, session_id: str) -> None:
        """End ``session_id`` now (logout); ending an ended session does nothing.

        Raises:
            BrokerUnavailable: Redis cannot be reached or refused the write.
        """
        with translated_failures(self.core.url):
            with self.core.client.pipeline(transaction=True) as pipe:
                pipe.delete(self._key(session_id))
                pipe.zrem(self.core.keys.ui_sessions, digest(session_id))
                pipe.execute()

    def count(self) -> int:
        """Sessions in the index (some may have just expired)."""
        with translated_failures(self.core.url):
            return int(self.core.client.zcard(self.core.keys.ui_sessions))
