"""What a run's log says it lost is exact, however fast the flow writes.

Lines leave a run's log two ways: the budget drops the oldest (``log_append.lua``
counts them in the run record, and readers see one marker line), and the engine's
backlog drops the oldest it holds when Redis takes lines more slowly than the flow
writes them, or not at all for a while (``LineSink``; a notice stands where they went).
The notice keeps its count when the budget drops it in turn, so the head marker plus
the notices left plus the lines kept is every line the flow wrote. A reader never meets
a gap that no marker covers, even when a trim runs between its reads.
The end-to-end case, a real engine, is in test_log_drops_end_to_end.py.
"""

from __future__ import annotations

import re
import threading

import redis

from runq.broker import Broker, BrokerSettings, LogLine
from runq.broker.text import LOG_LINE_OVERHEAD, format_bytes
from runq.engine.line_sink import LineSink
from tests.agent_helpers import wait_for

MARKER = re.compile(r"\[runq: (\d+) earlier lines? \(([^)]*)\) dropped")
NOTICE = re.compile(r"\[runq: (\d+) lines? of output lost")


def numbered(start: int, stop: int) -> bytes:
    return b"".join(b"line %07d\n" % i for i in range(start, stop))


def cost(i: int) -> int:
    return len(f"line {i:07d}") + LOG_LINE_OVERHEAD


def accounted(lines: list[LogLine]) -> tuple[int, int, list[int]]:
    """(lines the head marker says were dropped, lines the notices say were lost, the
    numbers of the flow lines kept)."""
    dropped = lost = 0
    kept = []
    for line in lines:
        if line.stream == "engine" and (found := MARKER.match(line.message)):
            dropped += int(found.group(1))
        elif line.stream == "engine" and (found := NOTICE.match(line.message)):
            lost += int(found.group(1))
        else:
            assert line.message.startswith("line "), line
            kept.append(int(line.message.split()[1]))
    return dropped, lost, kept


def test_lines_the_backlog_lost_are_counted_after_the_budget_drops_their_notice(
    redis_url: str,
) -> None:
    budget = 64 * 1024
    broker = Broker.from_url(redis_url, settings=BrokerSettings(log_max_bytes_per_run=budget))
    try:
        run = broker.create_flow_run("drops")
        # Redis away (autostore off, nothing flushed): the backlog keeps its last 32 KiB.
        sink = LineSink(broker, run.id, raise_errors=True, autostore=False, backlog_bytes=32 * 1024)
        sink.feed("stdout", numbered(0, 5000))
        sink.flush()
        dropped, lost, kept = accounted(broker.read_logs(run.id, count=100_000))
        assert dropped == 0 and kept == list(range(5000 - len(kept), 5000))
        assert lost == 5000 - len(kept), "the notice, where the lines went missing"
        # The flow goes on and the budget drops the notice with the oldest lines.
        for start in range(5000, 10_000, 500):
            sink.feed("stdout", numbered(start, start + 500))
            sink.flush()
        sink.close()
        lines = broker.read_logs(run.id, count=100_000)
        dropped, lost, kept = accounted(lines)
        assert lost == 0 and kept == list(range(10_000 - len(kept), 10_000))
        assert dropped + len(kept) == 10_000, "every line the flow wrote, kept or counted"
        gone = sum(cost(i) for i in range(10_000 - len(kept)))
        assert MARKER.match(lines[0].message).group(2) == format_bytes(gone)
    finally:
        broker.close()


def test_a_reader_blocked_on_new_lines_is_told_of_a_trim_that_came_with_them(
    redis_url: str,
) -> None:
    """The trim runs in the same script as the append that wakes the reader: the lines
    it took after the reader's position are covered by a marker, never a silent gap."""
    small = Broker.from_url(redis_url, settings=BrokerSettings(log_max_bytes_per_run=32 * 1024))
    try:
        run = small.create_flow_run("follow")
        small.append_logs(run.id, [("stdout", "first")])
        (seen,) = small.read_logs(run.id)
        answer: list[list[LogLine]] = []
        reader = threading.Thread(
            target=lambda: answer.append(small.read_logs(run.id, after=seen.id, block_seconds=60))
        )
        reader.start()
        admin = redis.Redis.from_url(redis_url)
        wait_for(
            lambda: any(
                "xread" in c.get("cmd", "") and "b" in c.get("flags", "")
                for c in admin.client_list()
            ),
            30,
            "the reader to block",
        )
        admin.close()
        small.append_logs(run.id, [("stdout", f"new {i:04d}".ljust(100, ".")) for i in range(1000)])
        reader.join(60)
        (lines,) = answer
        assert lines[0].stream == "engine" and "dropped before they were read" in lines[0].message
        first = int(lines[1].message.split()[1].rstrip("."))
        assert first > 0, "the oldest new lines were dropped: the marker stands for them"
        assert [int(line.message.split()[1].rstrip(".")) for line in lines[1:]] == list(
            range(first, first + len(lines) - 1)
        )
    finally:
        small.close()
