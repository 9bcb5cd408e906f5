"""Named concurrency limits: caps on runs in flight across queues and deployments.

A limit is named by a tag: every run carrying the tag ``warehouse`` (its deployment's
tags and its own) holds one slot of the limit ``warehouse`` from the moment an agent
claims it to its end. A limit named ``KEY:*`` caps each value of the tags
``KEY:VALUE`` on its own (``customer:*`` with limit 1: one run per customer at a
time). A rate (``10/1m``) lets at most that many runs holding the tag start in any
rolling window, alone or beside a limit. Each limit lives in its own cluster slot
``{l:NAME}``; how runs take and give back its slots is ``broker/limit_slots.py``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from .checks import check_text
from .errors import ConcurrencyLimitNotFound, InvalidInput
from .field_types import NAME_MAX_LENGTH
from .limit_slots import LimitSlot, LimitSlots, deployment_limit_name, flat_pairs, text
from .models import Deployment
from .timeutil import ms_to_datetime, us_to_datetime

#: ``N/DURATION``: ``10/1m``, ``5/30s``, ``100/h`` (a bare unit is one of it).
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
MAX_RATE_WINDOW_MS = 7 * 86_400_000  # a week: the window's starts are kept that long
MAX_LIMIT = 1_000_000
DESCRIPTION_MAX_BYTES = 1000


class Rate(BaseModel):
    """At most ``count`` starts in any rolling window of ``window_ms``."""

    count: int = Field(ge=1, le=1_000_000)  # the window's starts are kept: bounded
    window_ms: int = Field(ge=1, le=MAX_RATE_WINDOW_MS)

    def __str__(self) -> str:
        for unit in ("d", "h", "m", "s"):
            size = _UNIT_MS[unit]
            if self.window_ms % size == 0:
                amount = self.window_ms // size
                return f"{self.count}/{'' if amount == 1 else amount}{unit}"
        return f"{self.count}/{self.window_ms}ms"


class ConcurrencyLimit(BaseModel):
    """A named limit as stored, with its counts when read."""

    name: str
    limit: int | None = None
    rate: Rate | None = None
    description: str = ""
    created: datetime
    updated: datetime
    active: int = 0  # slots held now (all values of a KEY:* limit)
    waiting: int = 0  # runs waiting for a slot now

    @property
    def per_value(self) -> bool:
        return self.name.endswith(":*")


class LimitHolder(BaseModel):
    """A run holding a slot: since when, on which queue, at which value."""

    run_id: str
    queue: str
    value: str = ""
    since: datetime


class LimitWaiter(BaseModel):
    """A run in a limit's line: its place (1 = next) among the runs of its value."""

    run_id: str
    queue: str
    value: str = ""
    due: datetime
    place: int


class LimitDetail(BaseModel):
    """A limit with who holds its slots and who waits, in order (``runq concurrency-limit
    inspect``); each list stops at ``max_listed`` runs per value."""

    limit: ConcurrencyLimit
    holders: list[LimitHolder]
    waiting: list[LimitWaiter]


def parse_rate(text: str) -> Rate:
    """``"10/1m"`` as a :class:`Rate`; a mistake is one InvalidInput line."""
    match = _RATE.match(text)
    if not match:
        raise InvalidInput(f"Invalid rate {text!r}: write N/DURATION, e.g. 10/1m, 5/30s, 100/h.")
    count, amount, unit = int(match[1]), float(match[2] or 1), match[3]
    window_ms = round(amount * _UNIT_MS[unit])
    if count < 1 or window_ms < 1:
        raise InvalidInput(f"Invalid rate {text!r}: both the count and the window must be > 0.")
    if window_ms > MAX_RATE_WINDOW_MS:
        raise InvalidInput(f"Invalid rate {text!r}: the window may be at most 7 days.")
    if count > MAX_LIMIT:
        raise InvalidInput(f"Invalid rate {text!r}: at most {MAX_LIMIT} starts per window.")
    return Rate(count=count, window_ms=window_ms)


def checked_limit_name(name: str) -> str:
    """A limit's name: a tag (``warehouse``) or ``KEY:*`` for every value of ``KEY:``."""
    problem = None
    if not isinstance(name, str) or not name.strip():
        problem = "it must not be empty"
    elif len(name) > NAME_MAX_LENGTH:
        problem = f"it must be at most {NAME_MAX_LENGTH} characters"
    elif not name.isprintable():
        problem = "it must not contain control characters"
    elif "{" in name or "}" in name:
        problem = "it must not contain '{' or '}'"
    elif "*" in name and (not name.endswith(":*") or name.count("*") > 1 or name == ":*"):
        problem = "'*' may only end it, as KEY:* (a limit per value of the tags KEY:VALUE)"
    if problem:
        raise InvalidInput(f"Invalid concurrency limit name {name!r}: {problem}.")
    return name


def checked_limit_value(limit: Any) -> int:
    """A limit on slots: an integer from 0 to a million."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_LIMIT:
        raise InvalidInput(
            f"Invalid concurrency limit {limit!r}: it must be an integer from 0 to {MAX_LIMIT}."
        )
    return limit


def _decode(name: str, stored: dict[str, str]) -> ConcurrencyLimit:
    rate = None
    if stored.get("rate_count"):
        rate = Rate(count=int(stored["rate_count"]), window_ms=int(stored["rate_ms"]))
    return ConcurrencyLimit(
        name=name,
        limit=int(stored["limit"]) if stored.get("limit") else None,
        rate=rate,
        description=stored.get("description", ""),
        created=us_to_datetime(int(stored["created"])),
        updated=us_to_datetime(int(stored["updated"])),
    )


_KEEP = object()


class ConcurrencyLimits(LimitSlots):
    """Create, read, list, change and delete named concurrency limits."""

    def sync_deployment_limit(self, deployment: Deployment) -> None:
        """Make the deployment's own limit follow its ``concurrency_limit`` (written after
        its record: a failure here is said, and the next save writes it again)."""
        if deployment.concurrency_limit is None:
            self.drop_deployment_limit(deployment)
            return
        name = deployment_limit_name(deployment.id)
        fields = {
            "limit": str(checked_limit_value(deployment.concurrency_limit)),
            "description": f"runs of deployment {deployment.name}",
        }
        self.scripts.limit_save(self._limit_keys(name), mode="put", name=name, fields=fields)
        self.client.sadd(self.keys.limit_names, name)
        self._pass_limit(name)  # a raised limit serves the runs already waiting

    def drop_deployment_limit(self, deployment: Deployment) -> None:
        """Delete the deployment's own limit, if it has one (its waiting runs go back)."""
        try:
            self.delete_concurrency_limit(deployment_limit_name(deployment.id))
        except ConcurrencyLimitNotFound:
            pass

    def _limit_fields(self, limit: Any, rate: Any, description: str | None) -> dict[str, str]:
        fields: dict[str, str] = {}
        if limit is not _KEEP:
            fields["limit"] = "" if limit is None else str(checked_limit_value(limit))
        if rate is not _KEEP:
            parsed = parse_rate(rate) if isinstance(rate, str) else rate
            fields["rate_count"] = str(parsed.count) if parsed else ""
            fields["rate_ms"] = str(parsed.window_ms) if parsed else ""
        if description is not None:
            check_text([description])
            if len(description.encode()) > DESCRIPTION_MAX_BYTES:
                raise InvalidInput(
                    f"A concurrency limit's description may hold at most {DESCRIPTION_MAX_BYTES}"
                    " bytes."
                )
            fields["description"] = description
        return fields

    def create_concurrency_limit(
        self,
        name: str,
        limit: int | None = None,
        *,
        rate: Rate | str | None = None,
        description: str = "",
    ) -> ConcurrencyLimit:
        """Create limit ``name``: at most ``limit`` runs tagged ``name`` in flight, and/or
        at most ``rate`` starts per window (``"10/1m"``).

        Raises:
            InvalidInput: a bad name, limit or rate, or neither a limit nor a rate.
            ConcurrencyLimitExists: a limit of that name exists (nothing changed).
        """
        checked_limit_name(name)
        if limit is None and rate is None:
            raise InvalidInput(f"Concurrency limit {name!r} needs a limit, a rate or both.")
        fields = self._limit_fields(limit, rate, description)
        stored = self.scripts.limit_save(
            self._limit_keys(name), mode="create", name=name, fields=fields
        )
        self.client.sadd(self.keys.limit_names, name)
        return _decode(name, _pairs(stored))

    def update_concurrency_limit(
        self,
        name: str,
        *,
        limit: Any = _KEEP,
        rate: Any = _KEEP,
        description: str | None = None,
    ) -> ConcurrencyLimit:
        """Change a limit (``limit=None`` or ``rate=None`` removes that cap); runs already
        waiting get any slots this frees at once.

        Raises:
            ConcurrencyLimitNotFound: no limit of that name.
            InvalidInput: a bad value, or neither a limit nor a rate would remain.
        """
        checked_limit_name(name)
        current = self.read_concurrency_limit(name)
        after_limit = current.limit if limit is _KEEP else limit
        after_rate = current.rate if rate is _KEEP else rate
        if after_limit is None and after_rate is None:
            raise InvalidInput(f"Concurrency limit {name!r} needs a limit, a rate or both.")
        fields = self._limit_fields(limit, rate, description)
        stored = self.scripts.limit_save(
            self._limit_keys(name), mode="update", name=name, fields=fields
        )
        self._pass_limit(name)  # a raised limit serves the runs already waiting
        return _decode(name, _pairs(stored))

    def read_concurrency_limit(self, name: str) -> ConcurrencyLimit:
        """Limit ``name`` with its slots in use and its waiting runs now.

        Raises:
            ConcurrencyLimitNotFound: no limit of that name.
        """
        checked_limit_name(name)
        found = self._read_limits([name])
        if not found:
            raise ConcurrencyLimitNotFound(name)
        return found[0]

    def list_concurrency_limits(self) -> list[ConcurrencyLimit]:
        """Every limit, by name, with its counts."""
        names = sorted(text(n) for n in self.client.smembers(self.keys.limit_names))
        return self._read_limits(names)

    def inspect_concurrency_limit(self, name: str, *, max_listed: int = 100) -> LimitDetail:
        """Limit ``name``, its holders and its waiting runs in the order they will start.

        Raises:
            ConcurrencyLimitNotFound: no limit of that name.
        """
        limit = self.read_concurrency_limit(name)
        keys = self._limit_keys(name)
        values = sorted(text(v) for v in self.client.smembers(keys.values))
        pipe = self.client.pipeline(transaction=False)
        for value in values:
            pipe.zrange(keys.holders(value), 0, max_listed - 1, withscores=True)
            pipe.zrange(keys.waiting(value), 0, max_listed - 1, withscores=True)
            pipe.hgetall(keys.where(value))
        replies = pipe.execute() if values else []
        holders: list[LimitHolder] = []
        waiting: list[LimitWaiter] = []
        for index, value in enumerate(values):
            held, line, where = replies[3 * index : 3 * index + 3]
            queues = {text(k): text(v) for k, v in where.items()}
            for run_id, since in held:
                run = text(run_id)
                holders.append(
                    LimitHolder(
                        run_id=run,
                        queue=queues.get(run, ""),
                        value=value,
                        since=ms_to_datetime(since),
                    )
                )
            for place, (run_id, due) in enumerate(line, start=1):
                run = text(run_id)
                waiting.append(
                    LimitWaiter(
                        run_id=run,
                        queue=queues.get(run, ""),
                        value=value,
                        due=ms_to_datetime(due),
                        place=place,
                    )
                )
        return LimitDetail(limit=limit, holders=holders, waiting=waiting)

    def delete_concurrency_limit(self, name: str) -> None:
        """Delete a limit; the runs waiting for it go back to their queues at once.

        Raises:
            ConcurrencyLimitNotFound: no limit of that name.
        """
        checked_limit_name(name)
        waiting = self.scripts.limit_delete(self._limit_keys(name), name=name)
        self.client.srem(self.keys.limit_names, name)
        self._send_back(LimitSlot(name), flat_pairs(waiting))

    def _read_limits(self, names: list[str]) -> list[ConcurrencyLimit]:
        """The limits of ``names`` that exist, with counts (two pipelines)."""
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            keys = self._limit_keys(name)
            pipe.hgetall(keys.config)
            pipe.smembers(keys.values)
        replies = pipe.execute()
        found: list[tuple[ConcurrencyLimit, list[str]]] = []
        for index, name in enumerate(names):
            stored, values = replies[2 * index], replies[2 * index + 1]
            if stored:
                found.append((_decode(name, _pairs(stored)), sorted(text(v) for v in values)))
        pipe = self.client.pipeline(transaction=False)
        for limit, values in found:
            keys = self._limit_keys(limit.name)
            for value in values:
                pipe.zcard(keys.holders(value))
                pipe.zcard(keys.waiting(value))
        counts = iter(pipe.execute() if any(values for _, values in found) else [])
        for limit, values in found:
            for _ in values:
                limit.active += int(next(counts))
                limit.waiting += int(next(counts))
        return [limit for limit, _ in found]


def _pairs(flat: Any) -> dict[str, str]:
    """A HASH read as a flat array (a script's HGETALL) or a dict, as text."""
    if isinstance(flat, dict):
        return {text(k): text(v) for k, v in flat.items()}
    items = [text(item) for item in flat]
    return dict(zip(items[::2], items[1::2], strict=True))
