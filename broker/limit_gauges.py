"""The gauges of named concurrency limits that metrics show, read at scrape time.

A fixed number of round trips whatever the number of limits and tag values: the names
(SMEMBERS), one pipeline of every limit's settings and values, Redis' clock (only when a
limit has a rate), and one pipeline of counts. On a Redis Cluster redis-py sends each
pipeline to every node owning one of its keys' slots at once, so a scrape costs about
``2 + 2 x nodes`` round trips. Nothing here runs a script or writes: a scrape changes no
line and frees no slot (the limit pass does that).

The rate's used part is what ``limit_acquire.lua`` would count: the starts within the
window by Redis' ``TIME`` (on a cluster, one node's). A script trims older starts only
when it runs, so they are counted with ZCOUNT over the window rather than ZCARD. Under a
``KEY:*`` limit only the values with holders or waiting runs are counted: the ``values``
SET is the only index of them, and a value whose runs all ended leaves it while its
starts may still be in the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from .core import BrokerCore, translated_failures
from .limit_slots import text
from .timeutil import datetime_to_ms

_SETTINGS = ["created", "limit", "rate_count", "rate_ms"]


class LimitGauges(BaseModel):
    """One limit's figures as its metrics show them (the counts ``concurrency-limit ls``
    shows). For a ``KEY:*`` limit, ``limit`` and ``rate_max`` apply to each value on its
    own while ``active``, ``waiting`` and ``rate_used`` are summed over its values."""

    name: str
    limit: int | None = Field(description="slots: runs in flight at most (None: rate only)")
    active: int = Field(description="slots held now")
    waiting: int = Field(description="runs waiting for a slot now (parked out of their queue)")
    rate_max: int | None = Field(description="starts allowed in the rate's window (None: no rate)")
    rate_window_ms: int | None = Field(description="the rate's rolling window")
    rate_used: int | None = Field(description="starts within the window now (None: no rate)")


def _number(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


def _settings(name: str, stored: Sequence[Any], values: Any) -> tuple[LimitGauges, list[str]]:
    """A limit's HMGET of :data:`_SETTINGS` as gauges without counts, and the values to
    count: those with holders or waiting runs now, and always ``""`` for a plain limit,
    whose rate's starts outlive its holders."""
    _, limit, rate_count, rate_ms = stored
    rate_max = _number(rate_count)
    gauges = LimitGauges(
        name=name,
        limit=_number(limit),
        active=0,
        waiting=0,
        rate_max=rate_max,
        rate_window_ms=_number(rate_ms) if rate_max is not None else None,
        rate_used=0 if rate_max is not None else None,
    )
    counted = {text(value) for value in values}
    if not name.endswith(":*"):
        counted.add("")
    return gauges, sorted(counted)


def read_limit_gauges(core: BrokerCore) -> list[LimitGauges]:
    """The gauges of every named limit, by name (a limit deleted meanwhile is left out).

    Raises:
        BrokerUnavailable: Redis cannot be reached or refused a command.
    """
    with translated_failures(core.url):
        names = sorted(text(name) for name in core.client.smembers(core.keys.limit_names))
        if not names:
            return []
        pipe = core.client.pipeline(transaction=False)
        for name in names:
            keys = core.keys.limit(name)
            pipe.hmget(keys.config, _SETTINGS)
            pipe.smembers(keys.values)
        replies = pipe.execute()
        found = [
            _settings(name, replies[2 * index], replies[2 * index + 1])
            for index, name in enumerate(names)
            if replies[2 * index][0] is not None  # no "created": deleted meanwhile
        ]
        _count(core, found)
    return [gauges for gauges, _ in found]


def _count(core: BrokerCore, found: list[tuple[LimitGauges, list[str]]]) -> None:
    """Fill in each limit's counts, summed over its values, in one pipeline."""
    rated = any(gauges.rate_window_ms is not None for gauges, _ in found)
    now_ms = datetime_to_ms(core.server_time()) if rated else 0
    pipe = core.client.pipeline(transaction=False)
    for gauges, values in found:
        keys = core.keys.limit(gauges.name)
        for value in values:
            pipe.zcard(keys.holders(value))
            pipe.zcard(keys.waiting(value))
            if gauges.rate_window_ms is not None:  # as limit_acquire.lua keeps the window
                pipe.zcount(keys.starts(value), f"({now_ms - gauges.rate_window_ms}", "+inf")
    counts = iter(pipe.execute() if any(values for _, values in found) else [])
    for gauges, values in found:
        for _ in values:
            gauges.active += int(next(counts))
            gauges.waiting += int(next(counts))
            if gauges.rate_used is not None:
                gauges.rate_used += int(next(counts))
