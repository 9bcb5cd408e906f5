"""Run logs: bounded in bytes per run, long lines split, echo and CLI safe.

A run's log is a stream beside its record; ``log_append.lua`` adds lines and drops the
oldest beyond the run's byte budget in one script, so these tests also run on the
cluster. Memory is measured with ``MEMORY USAGE ... SAMPLES 0`` of the log's key; cost
as CPU time ratios within one test, never against a wall clock.
"""

from __future__ import annotations

import math
import os
import time
from uuid import uuid4

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from runq.broker import Broker, BrokerSettings, FlowRunNotFound, InvalidInput, RedisOutOfMemory
from runq.broker.text import (
    LOG_LINE_MAX_BYTES,
    LOG_LINE_OVERHEAD,
    LOG_MAX_BYTES_PER_RUN,
    strip_controls,
)
from runq.engine.line_sink import LineSink
from tests.figures import Figure
from tests.redis_cluster import RedisCluster
from tests.redis_server import free_port

ON_CLUSTER = True
MiB = 1024 * 1024


def log_key(broker: Broker, run) -> str:
    return broker.keys.queue(run.work_queue_name).logs(str(run.id))


def record(broker: Broker, run) -> dict[str, str]:
    return broker.client.hgetall(broker.keys.queue(run.work_queue_name).run(str(run.id)))


def unreachable() -> Broker:
    """A Broker whose Redis is away (a closed port; no retries, so it fails at once)."""
    client = redis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0), socket_connect_timeout=1)
    return Broker(client, url="redis://away")


def all_lines(broker: Broker, run_id, count: int = 1000) -> list:
    """Every line of the log, page by page, as `flow-run logs` reads it."""
    lines, last = [], "0"
    while page := broker.read_logs(run_id, after=last, count=count):
        lines += page
        last = page[-1].id
    return lines


# ---- the byte budget --------------------------------------------------------------------


def test_a_run_log_stays_within_its_byte_budget_and_says_what_it_dropped(
    broker: Broker, runq, figure: Figure
) -> None:
    """3,200 lines of 64 KiB (200 MiB) into one run: Redis holds about the budget (4 MiB),
    the newest lines; the first line read says how many older ones went."""
    run = broker.create_flow_run("q")
    line_bytes, lines = 64 * 1024, 3200
    for start in range(0, lines, 16):  # 1 MiB per call, as a busy engine sends them
        broker.append_logs(
            run.id,
            [("stdout", f"{i:05d} ".ljust(line_bytes, "x")) for i in range(start, start + 16)],
        )
    memory = broker.client.memory_usage(log_key(broker, run), samples=0)
    figure("log_redis_bytes_200mib_into_one_run", memory, unit="bytes")
    figure("log_redis_bytes_to_budget", round(memory / LOG_MAX_BYTES_PER_RUN, 3))
    assert memory < 1.1 * LOG_MAX_BYTES_PER_RUN, "Redis holds the budget, not the output"

    fields = record(broker, run)
    assert int(fields["lb"]) <= LOG_MAX_BYTES_PER_RUN
    marker, *kept = all_lines(broker, run.id)
    pieces = math.ceil(line_bytes / LOG_LINE_MAX_BYTES)  # a 64 KiB line is stored in 5 entries
    assert int(fields["ld"]) + len(kept) == lines * pieces
    assert all(len(line.message.encode()) <= LOG_LINE_MAX_BYTES for line in kept)
    assert kept[-1].message == "x" * (line_bytes - (pieces - 1) * LOG_LINE_MAX_BYTES)
    assert kept[-pieces].message.startswith(f"{lines - 1:05d} "), "the newest lines are kept"
    assert not any(line.message.startswith("00000 ") for line in kept), "the oldest are gone"
    assert marker.stream == "engine" and marker.id == fields["ldid"]
    assert marker.message.startswith(f"[runq: {fields['ld']} earlier lines (")
    assert (
        "the log keeps the last 4.0 MiB of each run; RUNQ_LOG_MAX_BYTES_PER_RUN]" in marker.message
    )
    assert Broker._entry_id(marker.id) < Broker._entry_id(kept[0].id)

    printed = runq("flow-run", "logs", str(run.id)).stdout.splitlines()
    assert printed[0].split(" | ", 2)[1:] == ["engine", marker.message]
    assert len(printed) == 1 + len(kept)
    figure("log_lines_dropped_of_200mib", int(fields["ld"]))


def test_the_budget_is_a_setting_and_costs_each_line_its_bytes_plus_overhead(
    redis_url: str, monkeypatch
) -> None:
    budget = 50_000
    monkeypatch.setenv("RUNQ_LOG_MAX_BYTES_PER_RUN", str(budget))
    assert BrokerSettings.from_env().log_max_bytes_per_run == budget
    broker = Broker.from_url(redis_url, settings=BrokerSettings.from_env())
    run = broker.create_flow_run("q")
    broker.append_logs(run.id, [("stderr", "")] * 10_000)  # empty lines cost too
    marker, *kept = broker.read_logs(run.id, count=100_000)
    assert len(kept) == budget // LOG_LINE_OVERHEAD
    assert marker.message.startswith(f"[runq: {10_000 - len(kept)} earlier lines")
    assert "keeps the last 48.8 KiB of each run" in marker.message
    monkeypatch.setenv("RUNQ_LOG_MAX_BYTES_PER_RUN", "1000")
    with pytest.raises(InvalidInput, match="Invalid RUNQ_LOG_MAX_BYTES_PER_RUN '1000'"):
        BrokerSettings.from_env()


def test_a_reader_behind_the_drops_is_told_and_goes_on_with_the_oldest_line_kept(
    redis_url: str,
) -> None:
    broker = Broker.from_url(redis_url, settings=BrokerSettings(log_max_bytes_per_run=20_000))
    run = broker.create_flow_run("q")
    broker.append_logs(run.id, [("stdout", f"a{i}".ljust(100)) for i in range(100)])
    first = broker.read_logs(run.id, count=10)
    assert [line.message.strip() for line in first] == [f"a{i}" for i in range(10)], (
        "nothing dropped yet"
    )
    broker.append_logs(run.id, [("stdout", f"b{i}".ljust(100)) for i in range(200)])
    marker, *rest = broker.read_logs(run.id, after=first[-1].id, count=1000)
    assert marker.message.startswith("[runq: earlier lines were dropped before they were read")
    stream_id = lambda line: tuple(map(int, line.id.split("-")))  # "ms-seq", compared as numbers
    assert stream_id(rest[0]) > stream_id(marker) and rest[-1].message.strip() == "b199"
    assert broker.read_logs(run.id, after=marker.id, count=1000) == rest
    # the marker counts as one of `count`; the next page starts after what was returned
    page = broker.read_logs(run.id, count=2)
    assert (
        page[0].stream == "engine"
        and broker.read_logs(run.id, after=page[-1].id, count=1)[0] == rest[1]
    )
    # --follow reads (blocking) see the marker first too
    assert broker.read_logs(run.id, block_seconds=0.05)[0].message.startswith("[runq: ")
    with pytest.raises(InvalidInput, match="not a log line id"):
        broker.read_logs(run.id, after="yesterday")


def test_appending_to_a_missing_run_writes_nothing(broker: Broker) -> None:
    with pytest.raises(FlowRunNotFound):
        broker.append_logs(uuid4(), [("stdout", "into the void")])
    run = broker.create_flow_run("q")
    run_key = broker.keys.queue("q").run(str(run.id))
    broker.client.delete(run_key)  # the index still names it: the script itself refuses
    with pytest.raises(FlowRunNotFound):
        broker.append_logs(run.id, [("stdout", "into the void")])
    assert broker.client.exists(run_key, log_key(broker, run)) == 0, "no record, no log"
    with pytest.raises(InvalidInput, match="Invalid log stream 'stdin'"):
        broker.append_logs(broker.create_flow_run("q").id, [("stdin", "x")])


def test_under_full_memory_an_append_is_refused_whole(
    broker: Broker, redis_server, figure: Figure
) -> None:
    run = broker.create_flow_run("q")
    broker.append_logs(run.id, [("stdout", "before")])
    before = (broker.client.xlen(log_key(broker, run)), record(broker, run))
    if isinstance(redis_server, RedisCluster):
        clients = [redis.Redis(host="127.0.0.1", port=node.port) for node in redis_server.nodes]
    else:
        clients = [redis.Redis.from_url(redis_server.url)]
    try:
        for client in clients:  # 1 byte: full whatever memory Redis does not count (AOF)
            client.config_set("maxmemory", "1")
        with pytest.raises(RedisOutOfMemory):
            broker.append_logs(run.id, [("stdout", "x" * 1000)] * 100)
        assert (broker.client.xlen(log_key(broker, run)), record(broker, run)) == before
    finally:
        for client in clients:
            client.config_set("maxmemory", "0")
            client.close()
    assert broker.append_logs(run.id, [("stdout", "after")]) == 1
    figure("log_appends_half_written_under_full_memory", 0)


def test_the_log_expires_with_its_record_even_when_written_after_the_end(broker: Broker) -> None:
    run = broker.create_flow_run("q")
    broker.cancel_flow_run(run.id)  # ended before it printed anything: no log key yet
    broker.append_logs(run.id, [("engine", "a late line")])
    record_ttl = broker.client.pttl(broker.keys.queue("q").run(str(run.id)))
    # log_append.lua copies the record's PTTL onto the log: the two clock reads (PTTL, then
    # PEXPIRE) may fall a millisecond apart, so the log may outlive its record by that much.
    assert 0 < record_ttl - 1000 <= broker.client.pttl(log_key(broker, run)) <= record_ttl + 2


# ---- LineSink ---------------------------------------------------------------------------


def feed_newline_free(sink: LineSink, total: int, chunk: bytes) -> float:
    """Feed ``total`` bytes without a newline; the CPU seconds it took. The partial line
    the sink keeps never grows past one entry (what makes the cost linear)."""
    started = time.process_time()
    for _ in range(total // len(chunk)):
        sink.feed("stdout", chunk)
        assert len(sink.pending.get("stdout", b"")) <= LOG_LINE_MAX_BYTES
    sink.close()
    return time.process_time() - started


def test_newline_free_output_is_stored_in_bounded_entries_at_linear_cost(
    broker: Broker, figure: Figure
) -> None:
    """100 MB without a newline (what a binary dump or a progress bar without \\n is)
    becomes entries of at most LOG_LINE_MAX_BYTES, within the budget, and 4x the output
    costs about 4x the CPU (the old sink re-joined a growing buffer: 16x)."""
    chunk = b"0123456789abcdef" * 4096  # 64 KiB, the pipe reader's read size
    run = broker.create_flow_run("q")
    feed_newline_free(LineSink(broker, run, echo=False), 100 * MiB, chunk)
    fields = record(broker, run)
    kept = broker.read_logs(run.id, count=100_000)[1:]
    assert int(fields["ld"]) + len(kept) == math.ceil(100 * MiB / LOG_LINE_MAX_BYTES)
    assert max(len(line.message) for line in kept) == LOG_LINE_MAX_BYTES
    assert broker.client.memory_usage(log_key(broker, run), samples=0) < 1.1 * LOG_MAX_BYTES_PER_RUN

    # CPU time of this process (not the wall clock), the best of three rounds each,
    # taken in turn: other work on the machine inflates a round, never deflates one.
    tens, forties = [], []
    for _ in range(3):
        small, large = broker.create_flow_run("q"), broker.create_flow_run("q")
        tens.append(feed_newline_free(LineSink(broker, small), 10 * MiB, chunk))
        forties.append(feed_newline_free(LineSink(broker, large), 40 * MiB, chunk))
    ten, forty = min(tens), min(forties)
    figure("line_sink_cpu_ratio_40mb_to_10mb", round(forty / ten, 2))
    assert forty / ten < 8, f"40 MB cost {forty / ten:.1f}x 10 MB: not linear"


def test_lines_are_split_between_characters_and_crlf_is_one_line_end(broker: Broker) -> None:
    run = broker.create_flow_run("q")
    sink = LineSink(broker, run)
    text = "é" * 20_000 + "€"  # 40,003 bytes, no newline
    data = text.encode()
    for i in range(0, len(data), 7):  # chunks that cut characters
        sink.feed("stdout", data[i : i + 7])
    sink.feed("stderr", b"windows\r\nline\r\n")
    sink.close()
    lines = broker.read_logs(run.id)
    out = [line.message for line in lines if line.stream == "stdout"]
    assert "".join(out) == text and "\ufffd" not in "".join(out)
    assert all(len(piece.encode()) <= LOG_LINE_MAX_BYTES for piece in out)
    assert [line.message for line in lines if line.stream == "stderr"] == ["windows", "line"]
    assert sink.pending == {}


def test_echo_strips_controls_and_a_broken_echo_pipe_only_stops_the_echo(broker: Broker) -> None:
    run = broker.create_flow_run("q")
    read_end, write_end = os.pipe()
    sink = LineSink(broker, run, echo={"stdout": write_end, "stderr": write_end})
    sink.feed("stdout", b"\x1b[31mred\x1b[0m \x1b]0;pwned\x07title\n")
    assert os.read(read_end, 1000) == f"{run.name} | red title\n".encode()
    os.close(read_end)  # the terminal went away: EPIPE from now on
    sink.feed("stderr", b"nobody sees this\n")
    sink.feed("stdout", b"nor this\n")
    os.close(write_end)
    sink.close()
    stored = [line.message for line in broker.read_logs(run.id)]
    assert stored == ["\x1b[31mred\x1b[0m \x1b]0;pwned\x07title", "nobody sees this", "nor this"]


def test_echo_true_writes_stdout_and_stderr_lines_where_they_belong(broker: Broker, capsys) -> None:
    run = broker.create_flow_run("q")
    sink = LineSink(broker, run, echo=True)
    sink.feed("stdout", b"out \x1b[1mbold\x1b[0m\n")
    sink.feed("stderr", b"err\n")
    with pytest.raises(InvalidInput, match="Invalid log stream 'stdin'"):
        sink.feed("stdin", b"no such stream\n")
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (f"{run.name} | out bold\n", f"{run.name} | err\n")
    plain = LineSink(broker, run.id, echo=True, prefix="")
    plain.feed("stdout", b"no prefix\n")
    assert capsys.readouterr().out == "no prefix\n"


def test_an_engine_sink_keeps_what_it_could_not_store_and_stores_it_in_order_later(
    broker: Broker,
) -> None:
    run = broker.create_flow_run("q")
    away = unreachable()
    sink = LineSink(away, run.id, name=run.name, raise_errors=True, autostore=False)
    sink.feed("stdout", b"one\ntwo\n")  # autostore off: feeding never waits on Redis
    with pytest.raises(Exception, match="away"):
        sink.flush()
    sink.feed("stderr", b"three\n")
    assert sink.waiting == 3
    sink.broker = broker  # Redis is back
    assert sink.flush() == 3 and sink.waiting == 0
    assert [line.message for line in broker.read_logs(run.id)] == ["one", "two", "three"]

    small = LineSink(away, run.id, raise_errors=True, autostore=False, backlog_bytes=100)
    small.feed("stdout", b"".join(b"%d\n" % i for i in range(10)))
    small.broker = broker
    small.flush()
    tail = [line.message for line in broker.read_logs(run.id)][3:]
    assert tail[0].startswith("[runq: ") and "lines of output lost" in tail[0]
    assert tail[-1] == "9" and len(tail) - 1 + int(tail[0].split()[1]) == 10

    gone = LineSink(broker, uuid4(), raise_errors=True)
    with pytest.raises(FlowRunNotFound):
        gone.feed("stdout", b"a run that is gone\n")
    assert gone.waiting == 0, "never storable: not kept"


def test_a_best_effort_sink_reports_a_failure_once(broker: Broker, capsys) -> None:
    run = broker.create_flow_run("q")
    away = unreachable()
    sink = LineSink(away, run)
    for _ in range(3):
        sink.feed("stdout", b"lost\n")
    sink.broker = broker
    sink.feed("stdout", b"stored\n")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith(f"runq: could not store log lines of {run.id}: ")
    assert err[1] == f"runq: log lines of {run.id} are stored again (3 lines lost meanwhile)"
    assert [line.message for line in broker.read_logs(run.id)] == ["stored"]


# ---- terminal control sequences ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[1;31mbold red\x1b[0m", "bold red"),  # SGR
        ("a\x1b[2J\x1b[Hb\x1b[?25l", "ab"),  # clear screen, cursor home, hide cursor
        ("\x1b]0;fake title\x07after", "after"),  # OSC, BEL-terminated
        ("\x1b]52;c;cm0gLXJmIH4=\x1b\\paste", "paste"),  # OSC 52 clipboard, ST-terminated
        ("\x1b]8;;https://evil\x1b\\link\x1b]8;;\x1b\\", "link"),  # hyperlink
        ("\x1bP1$r0m\x1b\\dcs", "dcs"),  # DCS
        ("\x1b]0;never terminated", ""),  # an OSC to the end of the line
        ("\x9b31mC1 CSI\x9d0;t\x9c", "C1 CSI"),  # 8-bit CSI and OSC
        ("\x1b(B\x1b7\x1b8\x1bc", ""),  # charset, save/restore cursor, reset
        ("tab\tkept\r50%\x08\x00\x7f end \x1b", "tab\tkept50% end "),  # C0, DEL, lone ESC
        ("naïve — 日本語 ✓", "naïve — 日本語 ✓"),
    ],
)
def test_strip_controls(raw: str, shown: str) -> None:
    assert strip_controls(raw) == shown


def test_flow_run_logs_strips_controls_unless_raw(runq, broker: Broker) -> None:
    run = broker.create_flow_run("q")
    hostile = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\x1b[31mred\x1b[0m\x1b]0;title\x1b\\ done"
    broker.append_logs(run.id, [("stdout", hostile)])
    [shown] = runq("flow-run", "logs", str(run.id)).stdout.splitlines()
    assert shown.split(" | ", 2)[2] == "red done"
    [raw] = runq("flow-run", "logs", str(run.id), "--raw").stdout.splitlines()
    assert raw.split(" | ", 2)[2] == hostile
    broker.cancel_flow_run(run.id)
    [followed] = runq("flow-run", "logs", str(run.id), "--follow").stdout.splitlines()
    assert followed == shown
    assert "--raw" in runq("flow-run", "logs", "--help").stdout
