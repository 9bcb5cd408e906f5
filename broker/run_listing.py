"""Finding flow runs: by name or id, and listings that cost what they return.

Every queue keeps listing indexes in its own slot (``scripts/include/indexes.lua``): ZSETs of run
ids scored by creation time, one per state type, per non-default state name
("AwaitingRetry"), per deployment and per flow, and a lexical index of run names. A
listing reads, per queue, the newest entries of the most selective index for its
filters (one pipeline over all queues), merges them newest first and reads only the
records it returns, so its cost follows the rows returned, never the history. "Late"
runs come from the schedule ZSET by due time.

Queues written before the indexes existed are indexed on first use (or by
:meth:`RunListing.reindex_runs`), in bounded batches (``runs_reindex.lua``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from uuid import UUID

from .checks import checked_run_id, ms
from .core import BrokerCore
from .errors import FlowRunNotFound, InvalidInput, WorkQueueNotFound
from .field_types import validate_name
from .keys import QueueKeys
from .models import FlowRun, StateType
from .records import decode_run

MAX_LIST_LIMIT = 1_000_000
REINDEX_BATCH = 500  # runs per runs_reindex call: bounds the time one script holds Redis
NAME_CHOICES_SHOWN = 10  # ids listed when a run name is ambiguous
LATE = "Late"
#: State names with an index of their own (``sname:NAME``), beside the types' defaults.
STATE_NAMES = ("AwaitingRetry", "Retrying", "AwaitingConcurrencySlot")


@dataclass
class StateFilter:
    """The states a listing asks for: types, non-default names, and/or Late."""

    types: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    late: bool = False

    @classmethod
    def parse(cls, states: Iterable[StateType | str]) -> StateFilter:
        """State types (any case) or names ("Late", "AwaitingRetry", "Crashed", ...)."""
        wanted = cls()
        names = {name.lower(): name for name in STATE_NAMES}
        for state in states:
            text = state.value if isinstance(state, StateType) else str(state)
            if text.upper() in StateType.__members__:
                wanted.types.add(text.upper())
            elif text.lower() == LATE.lower():
                wanted.late = True
            elif text.lower() in names:
                wanted.names.add(names[text.lower()])
            else:
                types = ", ".join(StateType.__members__)
                raise InvalidInput(
                    f"Unknown state {text!r}: use a state type ({types}) or a name "
                    f"({', '.join((LATE, *STATE_NAMES))})."
                )
        return wanted

    def keys(self, keys: QueueKeys) -> list[str]:
        """The index ZSETs holding these states (Late is read apart)."""
        return [keys.index("state", t) for t in sorted(self.types)] + [
            keys.index("sname", n) for n in sorted(self.names)
        ]

    def matches(self, record: dict[str, str], late_before_ms: int) -> bool:
        if record.get("st") in self.types or record.get("sn") in self.names:
            return True
        return self.late and record.get("st") == "SCHEDULED" and int(record["due"]) < late_before_ms


@dataclass
class Query:
    """One listing: its filters and, per queue, the index it reads."""

    states: StateFilter | None
    deployment_id: str | None
    flow_name: str | None
    late_before_ms: int = 0
    before: tuple[int, str] | None = None  # (creation ms, id): only runs created before

    def sources(self, keys: QueueKeys) -> list[list[str]]:
        """Candidate index sets (a union each); the listing reads the smallest."""
        found: list[list[str]] = []
        if self.states is not None:
            found.append(self.states.keys(keys) + ([keys.scheduled] if self.states.late else []))
        if self.deployment_id:
            found.append([keys.index("dep", self.deployment_id)])
        if self.flow_name:
            found.append([keys.index("flow", self.flow_name)])
        return found or [[keys.runs]]

    def matches(self, record: dict[str, str]) -> bool:
        """A record read back still fits every filter (indexes may lag a moment)."""
        if not record:
            return False
        if self.states is not None and not self.states.matches(record, self.late_before_ms):
            return False
        if self.deployment_id and record.get("dep") != self.deployment_id:
            return False
        if self.flow_name and record.get("flow") != self.flow_name:
            return False
        return self.before is None or (created_ms(record), record["id"]) < self.before


def created_ms(record: dict[str, str]) -> int:
    return int(record["created"]) // 1000


class RunListing(BrokerCore):
    """The Broker's ways of finding runs: resolve, list, reindex."""

    # ---- names and ids ---------------------------------------------------------------

    def resolve_flow_run_id(self, name_or_id: str | UUID) -> str:
        """The id of the run ``name_or_id`` names: a run id, or a run's name.

        Raises:
            FlowRunNotFound: no run has that id or name.
            InvalidInput: several runs share the name (the message lists their ids).
        """
        text = str(name_or_id)
        try:
            run_id = checked_run_id(text)
        except InvalidInput:
            run_id = None
        if run_id is not None:  # an id: its run, or none (a name is never an id)
            self._queue_of(run_id)  # raises FlowRunNotFound; what the engine's user may read
            return run_id
        ids = self._runs_named(text)
        if not ids:
            raise InvalidInput(f"{text!r} is not a valid flow run id, nor the name of a flow run.")
        if len(ids) > 1:
            shown = ", ".join(ids[:NAME_CHOICES_SHOWN]) + (
                ", ..." if len(ids) > NAME_CHOICES_SHOWN else ""
            )
            raise InvalidInput(f"{len(ids)} flow runs are named {text!r}: {shown}; pass an id.")
        return ids[0]

    def _runs_named(self, name: str) -> list[str]:
        """Ids of the runs called ``name`` on every queue (one ZRANGEBYLEX per queue)."""
        if not name:
            return []
        queues = self._ensure_indexed(self._listed_queues(None))
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            pipe.zrangebylex(self.keys.queue(queue).names_index, f"[{name}\0", f"({name}\x01")
        ids: list[str] = []
        for queue, members in zip(queues, pipe.execute()):
            for member in members:
                run_id = member[len(name) + 1 :]
                if len(run_id) == 36:
                    ids.append(run_id)
                    self._remember_queue(run_id, queue)
        return sorted(ids)

    # ---- which queues ----------------------------------------------------------------

    def _listed_queues(self, queue: str | UUID | None) -> list[str]:
        """Live queues and deleted ones whose history is kept; or the one named (by name
        or id, a deleted queue by name)."""
        if queue is None:
            pipe = self.client.pipeline(transaction=False)
            pipe.smembers(self.keys.queue_names)
            pipe.smembers(self.keys.retired_queues)
            live, retired = pipe.execute()
            return sorted(set(live) | set(retired))
        text = str(queue)
        name = self.client.hget(self.keys.queue_ids, text) or text
        try:
            validate_name(name)
        except ValueError:
            raise WorkQueueNotFound(text) from None
        pipe = self.client.pipeline(transaction=False)
        pipe.sismember(self.keys.queue_names, name)
        pipe.sismember(self.keys.retired_queues, name)
        if not any(pipe.execute()):
            raise WorkQueueNotFound(text)
        return [name]

    def _ensure_indexed(self, queues: list[str]) -> list[str]:
        """Index, now, the queues whose runs predate the indexes (their config lacks
        ``indexed``, which runs_reindex.lua writes when done and every queue created
        since has; a deleted queue has no config and is taken as indexed). Each queue is
        looked at once per Broker: a listing of queues already seen asks Redis nothing."""
        unknown = [queue for queue in queues if queue not in self._indexed_queues]
        if not unknown:
            return queues
        pipe = self.client.pipeline(transaction=False)
        for queue in unknown:
            pipe.hmget(self.keys.queue(queue).config, "id", "indexed")
        for queue, (queue_id, indexed) in zip(unknown, pipe.execute()):
            if queue_id is not None and indexed != "1":
                self._reindex_queue(queue)
            self._indexed_queues.add(queue)
        return queues

    def reindex_runs(self, queue: str | UUID | None = None) -> int:
        """Index the runs of ``queue`` (every queue by default) written before the listing
        indexes existed; safe to repeat, and runs keep being served meanwhile.

        Returns:
            How many runs were (re)indexed.

        Raises:
            WorkQueueNotFound: no such queue.
        """
        return sum(self._reindex_queue(name) for name in self._listed_queues(queue))

    def _reindex_queue(self, queue: str) -> int:
        keys, cursor_id, cursor_ms, total = self.keys.queue(queue), "", "", 0
        while True:
            cursor_id, cursor_ms, count = self.scripts.runs_reindex(
                keys, cursor_id=cursor_id, cursor_ms=cursor_ms, batch=REINDEX_BATCH
            )
            total += int(count)
            if not cursor_id:
                return total

    # ---- listing ---------------------------------------------------------------------

    def list_flow_runs(
        self,
        queue: str | UUID | None = None,
        *,
        states: Iterable[StateType | str] | None = None,
        deployment_id: str | UUID | None = None,
        flow_name: str | None = None,
        limit: int = 100,
        before: str | UUID | None = None,
    ) -> list[FlowRun]:
        """Runs, newest first, optionally filtered; costs what it returns.

        Args:
            queue: one queue's runs (name or id; a deleted queue's kept history by
                name); every queue by default.
            states: state types or names ("FAILED", "Late", "AwaitingRetry", "Crashed");
                any of them matches.
            deployment_id: only this deployment's runs.
            flow_name: only this flow's runs.
            limit: at most this many runs.
            before: a run (id or name): only runs created before it (the next page).

        Returns:
            Matching runs, newest first (Late runs: latest due first among the late).

        Raises:
            InvalidInput: a bad limit or state.
            WorkQueueNotFound: ``queue`` does not exist.
            FlowRunNotFound: ``before`` names no run.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_LIST_LIMIT:
            raise InvalidInput(f"limit must be an integer between 1 and {MAX_LIST_LIMIT}.")
        states = list(states or ())
        state_filter = StateFilter.parse(states) if states else None  # [] filters nothing
        query = Query(
            state_filter, str(deployment_id) if deployment_id else None, flow_name or None
        )
        queues = self._ensure_indexed(self._listed_queues(queue))
        if before is not None:
            query.before = self._creation_of(before)
        if state_filter is not None and state_filter.late:
            now_ms = int(self.server_time().timestamp() * 1000)
            query.late_before_ms = now_ms - ms(self.settings.late_after_seconds)
        return self._collect(queues, query, limit)

    def _creation_of(self, run: str | UUID) -> tuple[int, str]:
        run_id = self.resolve_flow_run_id(run)
        score = self.client.zscore(self.keys.queue(self._queue_of(run_id)).runs, run_id)
        if score is None:
            raise FlowRunNotFound(run_id)
        return int(score), run_id

    def _chosen_sources(self, queues: list[str], query: Query) -> list[tuple[str, list[str]]]:
        """Per queue, the candidate index set with the fewest entries."""
        plans = [(queue, query.sources(self.keys.queue(queue))) for queue in queues]
        if all(len(sources) == 1 for _, sources in plans):
            return [(queue, sources[0]) for queue, sources in plans]
        pipe = self.client.pipeline(transaction=False)
        for _, sources in plans:
            for source in sources:
                for key in source:
                    pipe.zcard(key)
        sizes = iter(pipe.execute())
        chosen = []
        for queue, sources in plans:
            totals = [sum(next(sizes) for _ in source) for source in sources]
            chosen.append((queue, sources[totals.index(min(totals))]))
        return chosen

    def _collect(self, queues: list[str], query: Query, limit: int) -> list[FlowRun]:
        """Read the newest candidates of each chosen index, growing the window only when
        filters or stale entries reject some, and the records of the rows returned."""
        chosen = self._chosen_sources(queues, query)
        records: dict[str, dict[str, str]] = {}
        window = limit
        while True:
            candidates, floor = self._candidates(chosen, query, window, records)
            if floor is not None:  # below it, an index not read far enough may hold rows
                candidates = [row for row in candidates if row[:2] >= floor]
            found: list[FlowRun] = []
            for position in range(0, len(candidates), limit):
                self._read_records(candidates[position : position + limit], records)
                self._drop_missing(chosen, candidates[position : position + limit], records)
                for _, run_id, queue in candidates[position : position + limit]:
                    if query.matches(records[run_id]):
                        found.append(decode_run(records[run_id], queue))
                        if len(found) == limit:
                            return found
            if floor is None:
                return found
            window *= 4

    def _drop_missing(
        self,
        chosen: list[tuple[str, list[str]]],
        rows: list[tuple[int, str, str]],
        records: dict[str, dict[str, str]],
    ) -> None:
        """A lazy repair: ZREM from the indexes just read the entries whose record is gone
        (an index entry is written with its record, in one script, so a missing record
        means a run that expired or was removed without its entries)."""
        gone = [(run_id, queue) for _, run_id, queue in rows if not records[run_id]]
        if not gone:
            return
        sources = dict(chosen)
        pipe = self.client.pipeline(transaction=False)
        for run_id, queue in gone:
            for key in sources.get(queue, []):
                if key != self.keys.queue(queue).scheduled:  # the claim drops those itself
                    pipe.zrem(key, run_id)
        pipe.execute()

    def _candidates(
        self,
        chosen: list[tuple[str, list[str]]],
        query: Query,
        window: int,
        records: dict[str, dict[str, str]],
    ) -> tuple[list[tuple[int, str, str]], tuple[int, str] | None]:
        """The newest ``window`` entries of every chosen index, merged newest first, and
        the floor: the highest last row of the indexes that have more (None: none has)."""
        top = "+inf" if query.before is None else str(query.before[0])
        pipe = self.client.pipeline(transaction=False)
        reads: list[tuple[str, str]] = []
        for queue, source in chosen:
            for key in source:
                if key == self.keys.queue(queue).scheduled:  # Late: by due time
                    pipe.zrevrangebyscore(key, f"({query.late_before_ms}", "-inf", 0, window)
                else:
                    pipe.zrevrangebyscore(key, top, "-inf", 0, window, withscores=True)
                reads.append((queue, key))
        merged: dict[str, tuple[int, str, str]] = {}
        floor: tuple[int, str] | None = None
        late: list[tuple[str, str]] = []
        for (queue, key), rows in zip(reads, pipe.execute()):
            if key == self.keys.queue(queue).scheduled:
                late += [(queue, run_id) for run_id in rows]
                if len(rows) == window:
                    floor = floor or (0, "")
                continue
            for run_id, score in rows:
                merged[run_id] = (int(score), run_id, queue)
            if len(rows) == window:
                last = (int(rows[-1][1]), rows[-1][0])
                floor = last if floor is None else max(floor, last)
        if late:  # ordered by creation like the rest, once their records are read
            self._read_records([(0, run_id, queue) for queue, run_id in late], records)
            for queue, run_id in late:
                if records[run_id]:
                    merged[run_id] = (created_ms(records[run_id]), run_id, queue)
        rows = sorted(merged.values(), reverse=True)
        if query.before is not None:
            rows = [row for row in rows if row[:2] < query.before]
        return rows, floor

    def _read_records(
        self, rows: list[tuple[int, str, str]], records: dict[str, dict[str, str]]
    ) -> None:
        """HGETALL the rows not read yet (one pipeline)."""
        missing = [(run_id, queue) for _, run_id, queue in rows if run_id not in records]
        if not missing:
            return
        pipe = self.client.pipeline(transaction=False)
        for run_id, queue in missing:
            pipe.hgetall(self.keys.queue(queue).run(run_id))
        for (run_id, _), record in zip(missing, pipe.execute()):
            records[run_id] = record
