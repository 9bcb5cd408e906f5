"""Run logs: a capped stream beside each run record, within a byte budget."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from .checks import checked_run_id
from .core import BrokerCore
from .errors import FlowRunNotFound, InvalidInput
from .models import LogLine
from .text import LOG_LINE_OVERHEAD, LOG_STREAMS, format_bytes, log_marker, split_utf8
from .timeutil import ms_to_datetime

LOG_APPEND_BATCH_BYTES = 1024 * 1024  # message bytes per log_append call: bounds its time
LOG_APPEND_BATCH_LINES = 1000
#: The most lines one head or tail read returns (a log keeps ~4 MiB: a few 100k lines).
MAX_LOG_READ_LINES = 1_000_000


def lost_notice(lines: int, size: int) -> str:
    """The engine line standing in a run's log where lines of output never reached it."""
    noun = "line" if lines == 1 else "lines"
    return f"[runq: {lines} {noun} of output lost ({format_bytes(size)}): Redis could not store them in time]"


class RunLogs(BrokerCore):
    """The Broker's log methods."""

    def append_logs(
        self,
        run_id: str | UUID,
        lines: Iterable[tuple[str, str]],
        *,
        lost: int = 0,
        lost_bytes: int = 0,
    ) -> int:
        """Add ``(stream, message)`` lines to the run's log, within its byte budget.

        Each line is stamped by Redis' clock (its stream entry id). A message longer than
        ``LOG_LINE_MAX_BYTES`` (UTF-8) is stored as several lines of at most that size,
        cut between characters. The log keeps the newest ``log_max_bytes_per_run`` bytes
        of the run (a line costs its length + ``LOG_LINE_OVERHEAD``): older lines are
        dropped, atomically with the append, and ``read_logs`` starts with a line saying
        how many. The log lives as long as the run's record.

        Lines go in calls of at most ~1 MiB, each atomic: when one fails, the lines of
        the calls before it are stored, the others not.

        Args:
            run_id: the run.
            lines: ``(stream, message)`` pairs, stream ``stdout``, ``stderr`` or
                ``engine`` (what runq itself says about the run).
            lost: lines of the run that were lost before these, never stored (a writer's
                backlog that overflowed). An ``engine`` line saying so goes first; it
                keeps the count, so when the budget drops it in turn, the head marker
                counts those lines too: what the log says was lost is exact.
            lost_bytes: what those lines would have cost (message bytes + overhead each).

        Returns:
            How many entries were written (a split line counts each piece; the notice
            of lost lines counts one).

        Raises:
            FlowRunNotFound: no such run (nothing is written).
            InvalidInput: an unknown stream.
        """
        run_id = checked_run_id(run_id)
        keys = self.keys.queue(self._queue_of(run_id))
        notice = lost_notice(lost, lost_bytes) if lost > 0 else ""

        def append(batch: list[str | bytes]) -> int:
            nonlocal notice, lost, lost_bytes
            written: int = self.scripts.log_append(
                keys,
                run_id=run_id,
                max_bytes=self.settings.log_max_bytes_per_run,
                overhead=LOG_LINE_OVERHEAD,
                lost=lost,
                lost_bytes=lost_bytes,
                notice=notice,
                lines=batch,
            )[0]
            notice, lost, lost_bytes = "", 0, 0  # the first call carried them
            return written

        batch: list[str | bytes] = []
        size = written = 0
        for stream, message in lines:
            if stream not in LOG_STREAMS:
                raise InvalidInput(
                    f"Invalid log stream {stream!r}: one of {', '.join(LOG_STREAMS)}."
                )
            for piece in split_utf8(str(message).encode("utf-8", "replace")):
                batch += (stream, piece)
                size += len(piece)
                if size >= LOG_APPEND_BATCH_BYTES or len(batch) >= 2 * LOG_APPEND_BATCH_LINES:
                    written += append(batch)
                    batch, size = [], 0
        if batch or lost > 0:
            written += append(batch)
        return written

    @staticmethod
    def _entry_id(entry_id: str) -> tuple[int, int]:
        """A log line id (``ms-seq``, or ``ms``) as a comparable pair."""
        ms, _, seq = str(entry_id).partition("-")
        if not (ms.isdigit() and (seq.isdigit() or not seq) and ms.isascii() and seq.isascii()):
            raise InvalidInput(f"{entry_id!r} is not a log line id (like 1718000000000-0).")
        return int(ms), int(seq or 0)

    def read_logs(
        self,
        run_id: str | UUID,
        *,
        after: str = "0",
        count: int = 1000,
        block_seconds: float | None = None,
    ) -> list[LogLine]:
        """Log lines of a run after entry id ``after`` (``"0"``: from the start).

        When the run's log dropped lines to its byte budget, a reader starting before
        them first gets one ``engine`` line saying so (``[runq: 1234 earlier lines (5.1
        MiB) dropped: ...]``), whose id is that of the newest line dropped: passing it
        back as ``after`` goes on with the oldest line kept.

        Args:
            run_id: the run.
            after: the ``id`` of the last line already read.
            count: at most this many lines (the marker included).
            block_seconds: wait up to this long for a new line (``--follow``).

        Returns:
            The lines, oldest first.

        Raises:
            FlowRunNotFound: no such run.
            InvalidInput: ``after`` is not a log line id.
        """
        run_id = checked_run_id(run_id)
        position = self._entry_id(after)
        keys = self.keys.queue(self._queue_of(run_id))
        key = keys.logs(run_id)
        # One round trip, the counters read after the lines (see _kept).
        pipe = self.client.pipeline(transaction=False)
        if block_seconds is None:
            pipe.xrange(key, f"({after}" if position > (0, 0) else "-", "+", count=count)
        else:
            pipe.xread({key: after}, count=count, block=int(block_seconds * 1000))
        pipe.hmget(keys.run(run_id), "ld", "ldb", "ldid", "lmax")
        reply, counters = pipe.execute()
        if block_seconds is None:
            entries = reply
        else:
            entries = reply[0][1] if reply else []
        entries = self._kept(entries, counters)
        marker = self._drop_marker(counters, position)
        return ([marker] if marker else []) + self._decode_entries(entries)[: count - bool(marker)]

    def read_log_head(self, run_id: str | UUID, count: int) -> list[LogLine]:
        """The oldest ``count`` lines the run's log keeps (``flow-run logs --head N``).

        One ``XRANGE ... COUNT count``: it costs what it returns, whatever the log's
        length. When older lines were dropped to the byte budget, the marker saying so
        comes first, on top of the ``count`` lines.

        Raises:
            FlowRunNotFound: no such run.
            InvalidInput: ``count`` is not between 1 and ``MAX_LOG_READ_LINES``.
        """
        return self._read_end(run_id, count, newest=False)

    def read_log_tail(self, run_id: str | UUID, count: int) -> list[LogLine]:
        """The newest ``count`` lines of the run's log, oldest first (``--tail N``).

        One ``XREVRANGE ... COUNT count``: a tail of a long log costs what it returns,
        never the lines before it. When these are all the lines kept and older ones were
        dropped, the marker saying so comes first, on top of the ``count`` lines.

        Raises:
            FlowRunNotFound: no such run.
            InvalidInput: ``count`` is not between 1 and ``MAX_LOG_READ_LINES``.
        """
        return self._read_end(run_id, count, newest=True)

    def _read_end(self, run_id: str | UUID, count: int, *, newest: bool) -> list[LogLine]:
        if not 0 < count <= MAX_LOG_READ_LINES:
            raise InvalidInput(
                f"A log read takes between 1 and {MAX_LOG_READ_LINES} lines, not {count}."
            )
        run_id = checked_run_id(run_id)
        keys = self.keys.queue(self._queue_of(run_id))
        pipe = self.client.pipeline(transaction=False)
        if newest:
            pipe.xrevrange(keys.logs(run_id), "+", "-", count=count)
        else:
            pipe.xrange(keys.logs(run_id), "-", "+", count=count)
        pipe.hmget(keys.run(run_id), "ld", "ldb", "ldid", "lmax")  # after the lines: see _kept
        pipe.exists(keys.run(run_id))
        entries, counters, exists = pipe.execute()
        if not exists:
            raise FlowRunNotFound(run_id)
        if newest:
            entries.reverse()
        entries = self._kept(entries, counters)
        # A tail that stops short of the oldest kept line has nothing dropped right before it.
        marker = self._drop_marker(counters, (0, 0)) if not newest or len(entries) < count else None
        return ([marker] if marker else []) + self._decode_entries(entries)

    def _kept(
        self, entries: list[tuple[str, dict[str, str]]], counters: list[str | None]
    ) -> list[tuple[str, dict[str, str]]]:
        """``entries`` (read just before ``counters``) without those the budget dropped
        in between. A trim only ever drops the oldest lines, and the counters say up to
        which line it went (``ldid``) and how many it took: lines after that one are
        still in the log, lines up to it are counted in the marker. Reading the counters
        first would miss the lines a trim took in between, counted nowhere."""
        newest_dropped = counters[2]
        if not (entries and newest_dropped):
            return entries
        limit = self._entry_id(newest_dropped)
        if self._entry_id(entries[0][0]) > limit:
            return entries
        return [entry for entry in entries if self._entry_id(entry[0]) > limit]

    def _drop_marker(self, counters: list[str | None], position: tuple[int, int]) -> LogLine | None:
        """The line saying older lines were dropped, for a reader at ``position``; None
        when nothing it has not read was dropped."""
        dropped, dropped_bytes, newest_dropped, budget = counters
        if not (dropped and newest_dropped and position < self._entry_id(newest_dropped)):
            return None
        return LogLine(
            id=newest_dropped,
            timestamp=ms_to_datetime(self._entry_id(newest_dropped)[0]),
            stream="engine",
            message=log_marker(
                int(dropped),
                int(dropped_bytes or 0),
                int(budget or self.settings.log_max_bytes_per_run),
                since_read=position > (0, 0),
            ),
        )

    @staticmethod
    def _decode_entries(entries: list[tuple[str, dict[str, str]]]) -> list[LogLine]:
        return [
            LogLine(
                id=entry_id,
                timestamp=ms_to_datetime(int(entry_id.split("-")[0])),
                stream=fields.get("s", "stdout"),
                message=fields.get("m", ""),
            )
            for entry_id, fields in entries
        ]
