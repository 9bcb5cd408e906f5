"""What a command wrote: snapshots of the keyspace that keys expiring on their own cannot change.

A refused command must leave Redis as it found it. Comparing the whole keyspace before and
after says so, but not on its own: keys with a time to live (the scheduler's lease, an
agent's registration, a purged run's backstop expiry) may run out between the two
snapshots on a slow machine, which is no write. So a snapshot records, per key, its type,
its DUMP bytes and whether it expires, and the two Redis ``TIME`` readings around it; and
:func:`changes` reports every key added, every key changed (value, type, or gaining or
losing its expiry), and every key removed, except a key whose remaining time to live,
read before, had run out by Redis' own clock when the second snapshot ended. A removal
that expiry cannot explain is still a write, and nothing else is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
import redis.cluster

from runq.broker import Broker


@dataclass(frozen=True)
class Entry:
    """One key as a snapshot saw it."""

    kind: bytes
    value: bytes
    ttl_ms: int  # -1: the key never expires

    @property
    def expires(self) -> bool:
        return self.ttl_ms >= 0


@dataclass(frozen=True)
class Snapshot:
    """Every key, and Redis' clock (ms) read just before and just after the scan."""

    keys: dict[bytes, Entry]
    started_ms: int
    ended_ms: int


def raw_client(target: Broker | str) -> redis.Redis | redis.cluster.RedisCluster:
    """A client with binary replies (DUMP is not text) on the broker's server or cluster."""
    url = target.url if isinstance(target, Broker) else target
    if "+cluster://" in url:
        return redis.cluster.RedisCluster.from_url(url.replace("+cluster://", "://", 1))
    return redis.Redis.from_url(url)


def clock_ms(client: redis.Redis | redis.cluster.RedisCluster) -> int:
    seconds, microseconds = client.time()
    return int(seconds) * 1000 + int(microseconds) // 1000


def snapshot(target: Broker | str | redis.Redis | redis.cluster.RedisCluster) -> Snapshot:
    """Every key with its type, serialized value and remaining time to live."""
    client = (
        target
        if isinstance(target, (redis.Redis, redis.cluster.RedisCluster))
        else raw_client(target)
    )
    try:
        started = clock_ms(client)
        names = sorted(client.scan_iter(count=1000))
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.type(name)
            pipe.dump(name)
            pipe.pttl(name)
        replies = pipe.execute() if names else []
        ended = clock_ms(client)
    finally:
        if client is not target:
            client.close()
    keys = {}
    for i, name in enumerate(names):
        kind, value, ttl = replies[3 * i : 3 * i + 3]
        if value is None or ttl == -2:
            continue  # it expired between the scan and the read
        kind = kind if isinstance(kind, bytes) else str(kind).encode()
        keys[name] = Entry(kind, value, int(ttl))
    return Snapshot(keys, started, ended)


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """The keys written between two snapshots: ``+`` added, ``~`` changed, ``-`` removed
    (a removal only when the key could not have expired by itself meanwhile)."""
    elapsed = after.ended_ms - before.started_ms
    found = [f"+ {name!r}" for name in after.keys.keys() - before.keys.keys()]
    for name, entry in before.keys.items():
        now = after.keys.get(name)
        if now is None:
            if not (entry.expires and entry.ttl_ms <= elapsed + 1):
                found.append(f"- {name!r}")
        elif (now.kind, now.value, now.expires) != (entry.kind, entry.value, entry.expires):
            found.append(f"~ {name!r}")
    return sorted(found)


def names(found: Snapshot) -> set[str]:
    """The key names of a snapshot, as text."""
    return {name.decode() for name in found.keys}
