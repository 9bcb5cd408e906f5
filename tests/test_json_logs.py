"""``--log-format json``: every line of every stream of a service is one JSON object.

A log shipper must never meet a line that is not JSON, nor a record a flow or a run's
name forged. So these tests run real processes in JSON mode and parse every line they
wrote, on stdout and on stderr: an agent running ``examples/flows.py:hello``, a flow
printing hostile lines (a forged record, escapes, invalid UTF-8, a line longer than a
log line, a traceback on stderr) and a run whose stored name holds a newline and a
forged record (as a record written before names were checked could); the engine's own
error lines; and a service's stray output (a print, a warning, an asyncio error, a
thread's exception, an uncaught one). Run names themselves refuse control characters
and bidi overrides, as queue names do: one line, nothing written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runq.broker import Broker, InvalidInput, StateType
from tests import agent_helpers
from tests.agent_helpers import FAST, wait_for
from tests.figures import Figure
from tests.keyspace import changes, snapshot

redis_server = agent_helpers.redis_server  # one server for this module

ROOT = Path(__file__).resolve().parents[1]
RUNQ = Path(sys.executable).with_name("runq")
FORGED = '{"time": "2024-01-01T00:00:00.000+00:00", "level": "CRITICAL", "logger": "runq.agent", "message": "forged"}'

HOSTILE_FLOW = """
import os, sys


def hostile() -> None:
    print(%r)
    print("carriage\\rreturn, \\x1b[31mred\\x1b[0m, nul \\x00, bell \\x07, c1 \\x85 end")
    print("line\\u2028separator, \\u202eoverride, tab\\there")
    sys.stdout.flush()
    os.write(1, b"invalid utf-8 \\xff\\xfe here\\n")
    os.write(1, b"x" * 40000 + b"\\n")
    print("to stderr", file=sys.stderr)
    print(%r, file=sys.stderr)
    sys.stdout.write("no newline at the end")
    raise RuntimeError("hostile\\nmultiline error")
""".replace("%r", repr(FORGED))

HOSTILE_NAMES = [
    "x\n" + FORGED,
    "run\u202eexe.txt",
    "\x1b[31mred",
    "cr\rhere",
    "c1\x85next",
    "tab\there",
    "nul\x00",
    "zero\u200bwidth",
    "line\u2028separator",
]


def parse_every_line(path: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(path.read_bytes().decode("utf-8").split("\n")[:-1], 1):
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"{path.name} line {number} is not JSON: {line[:200]!r}") from None
        assert isinstance(record, dict), f"{path.name} line {number}: {line[:200]!r}"
        assert {"time", "level", "logger", "message"} <= record.keys(), record
        records.append(record)
    return records


# ---- run names ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=[repr(n)[:24] for n in HOSTILE_NAMES])
def test_a_run_name_with_a_control_character_is_one_line_and_nothing_written(
    broker: Broker, name: str
) -> None:
    broker.create_flow_run("q")  # the queue exists: only the run could be written
    before = snapshot(broker)
    with pytest.raises(InvalidInput) as refused:
        broker.create_flow_run("q", name=name)
    with pytest.raises(InvalidInput):
        broker.create_flow_runs("fresh", [{"name": name}])
    message = str(refused.value)
    assert "\n" not in message and "\r" not in message and "\u202e" not in message, message
    assert "flow run name" in message
    assert changes(before, snapshot(broker)) == []


def test_printable_run_names_are_still_accepted(broker: Broker) -> None:
    for name in ["nightly {2024}: café 队列", "x" * 200, "spaces are fine"]:
        assert broker.create_flow_run("q", name=name).name == name
    with pytest.raises(InvalidInput, match="at most 200"):
        broker.create_flow_run("q", name="x" * 201)


# ---- an agent in JSON mode ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["warm", "cold"])
def test_every_line_an_agent_writes_in_json_mode_is_one_record(
    broker: Broker, redis_url: str, tmp_path: Path, engine: str, figure: Figure
) -> None:
    (tmp_path / "flows.py").write_text((ROOT / "examples" / "flows.py").read_text())
    (tmp_path / "hostile.py").write_text(HOSTILE_FLOW)
    broker.create_deployment(
        name="hello", entrypoint="flows.py:hello", work_queue_name="q", path=str(tmp_path)
    )
    broker.create_deployment(
        name="hostile", entrypoint="hostile.py:hostile", work_queue_name="q", path=str(tmp_path)
    )
    hello = broker.create_flow_run(deployment="hello")
    hostile = broker.create_flow_run(deployment="hostile")
    planted = broker.create_flow_run(deployment="hello", parameters={"name": "planted"})
    planted_name = "x\n" + FORGED  # as a record stored before names were checked holds
    broker.client.hset(broker.keys.queue("q").run(str(planted.id)), "name", planted_name)
    runs = (hello, hostile, planted)

    out, err = tmp_path / "agent.out", tmp_path / "agent.err"
    args = ["--no-warm-engine"] if engine == "cold" else []
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNQ_")}
    with out.open("w") as stdout, err.open("w") as stderr:
        agent = subprocess.Popen(
            [
                str(RUNQ),
                "agent",
                "start",
                "-q",
                "q",
                "--api",
                redis_url,
                "--log-format",
                "json",
                "--no-scheduler",
                *args,
            ],
            cwd=tmp_path,
            stdout=stdout,
            stderr=stderr,
            env={**clean, **FAST},
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: all(broker.read_flow_run(r.id).state.is_terminal for r in runs), 90, "the runs"
        )
        wait_for(lambda: out.read_text().count(" ended: ") >= 3, 60, "the agent to see them end")
    finally:
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(timeout=60)
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGKILL)
    assert code == 0
    assert broker.read_flow_run(hello.id).state.type is StateType.COMPLETED
    assert broker.read_flow_run(hostile.id).state.type is StateType.FAILED

    stdout_records, stderr_records = parse_every_line(out), parse_every_line(err)
    records = stdout_records + stderr_records
    forged = [r for r in records if r["level"] == "CRITICAL" or r["message"] == "forged"]
    figure("lines_parsed", len(records))
    figure("lines_not_json", 0)  # parse_every_line fails on the first
    figure("forged_records", len(forged))
    assert not forged, "nothing forged"

    def echoed(run_id: object, stream: str, found: list[dict[str, Any]]) -> list[str]:
        return [
            r["message"]
            for r in found
            if r["logger"] == "runq.flow_run"
            and r.get("run_id") == str(run_id)
            and r.get("stream") == stream
        ]

    assert echoed(hello.id, "stdout", stdout_records) == ["Hello, world!"]
    hello_line = next(r for r in stdout_records if r["message"] == "Hello, world!")
    assert hello_line["run_name"] == hello.name and hello_line["queue"] == "q"

    shown = echoed(hostile.id, "stdout", stdout_records)
    assert shown[0] == FORGED, "a forged record is only the message of the flow's line"
    assert shown[1] == "carriagereturn, red, nul , bell , c1  end"  # controls stripped
    assert shown[2] == "line\u2028separator, \u202eoverride, tab\there"
    assert shown[3] == "invalid utf-8 \ufffd\ufffd here"
    assert "".join(shown[4:7]) == "x" * 40000, "a long line in pieces, each a record"
    assert shown[-1] == "no newline at the end"
    errors = echoed(hostile.id, "stderr", stderr_records)
    assert errors[:2] == ["to stderr", FORGED]
    assert any("RuntimeError: hostile" in line for line in errors), "the traceback, a record a line"
    assert not echoed(hostile.id, "stderr", stdout_records) and not echoed(
        hostile.id, "stdout", stderr_records
    )

    named = [
        r
        for r in stdout_records
        if r.get("run_id") == str(planted.id) and r["logger"] == "runq.flow_run"
    ]
    assert [r["run_name"] for r in named] == [planted_name], "the name whole, inside one record"


# ---- the engine and a service's stray output ---------------------------------------------


def test_the_engines_error_line_is_a_record(redis_url: str) -> None:
    result = subprocess.run(
        [str(RUNQ), "flow-run", "execute", "01a2274a-df0a-7000-a4c7-288447221c35"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "RUNQ_API_URL": redis_url,
            "RUNQ_LOG_FORMAT": "json",
            "RUNQ_FLOW_RUN_TOKEN": "7",
        },
    )
    assert result.returncode == 1
    assert result.stdout == ""
    (record,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert (
        "01a2274a-df0a-7000-a4c7-288447221c35" in record["message"] and record["level"] == "ERROR"
    )


STRAY = """
import asyncio, logging, sys, threading, warnings
from runq.control.log_format import configure_logging

configure_logging("json")
print("a plain print")
print("two lines\\non stderr", file=sys.stderr)
logging.getLogger("urllib3").warning("a library's warning")
warnings.warn("a warning")
thread = threading.Thread(target=lambda: 1 / 0, name="doomed")
thread.start()
thread.join()


class Broken:
    def __del__(self):
        raise ValueError("from a finalizer")


Broken()


async def main():
    asyncio.get_running_loop().call_soon(lambda: 1 / 0)
    await asyncio.sleep(0.01)

asyncio.run(main())
raise RuntimeError("uncaught\\nat the end")
"""


def test_a_services_stray_output_is_records_too(tmp_path: Path) -> None:
    """What a service prints, what a library logs or warns, asyncio's errors (the UI's
    server runs on asyncio), a thread's and an uncaught exception: records, one a line."""
    script = tmp_path / "stray.py"
    script.write_text(STRAY)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=60)
    (tmp_path / "out").write_bytes(result.stdout)
    (tmp_path / "err").write_bytes(result.stderr)
    out, err = parse_every_line(tmp_path / "out"), parse_every_line(tmp_path / "err")
    assert result.returncode == 1
    by_logger = {(r["logger"], r["message"]) for r in out + err}
    assert ("runq.stdout", "a plain print") in by_logger
    assert {("runq.stderr", "two lines"), ("runq.stderr", "on stderr")} <= by_logger
    assert ("urllib3", "a library's warning") in by_logger
    assert any(logger == "py.warnings" and "a warning" in message for logger, message in by_logger)
    asyncio_errors = [r for r in out if r["logger"] == "asyncio"]
    assert asyncio_errors and "ZeroDivisionError" in asyncio_errors[0]["exception"]
    thread = next(r for r in out if "in thread doomed" in r["message"])
    assert "ZeroDivisionError" in thread["exception"]
    assert any("from a finalizer" in r.get("exception", "") for r in out)
    uncaught = next(r for r in out if r["level"] == "CRITICAL")
    assert uncaught["message"] == "Uncaught RuntimeError: uncaught\nat the end"


def test_a_services_error_line_is_a_record_in_json_mode() -> None:
    result = subprocess.run(
        [
            str(RUNQ),
            "agent",
            "start",
            "-q",
            "bad{",
            "--log-format",
            "json",
            "--api",
            "redis://127.0.0.1:1/0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    (record,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert record["level"] == "ERROR" and "Invalid work queue name 'bad{'" in record["message"]


@pytest.mark.parametrize("json_echo", [False, True], ids=["text", "json"])
def test_an_echoed_line_of_a_run_named_before_the_check_stays_one_line(
    broker: Broker, tmp_path: Path, json_echo: bool
) -> None:
    """A name stored before names were checked cannot start a line of its own, in either
    format: text strips its control characters, JSON escapes them inside the record."""
    from runq.engine.line_sink import LineSink

    run = broker.create_flow_run("q")
    target = (tmp_path / "echo").open("w")
    sink = LineSink(
        broker, run.id, echo=target, name="x\n" + FORGED, json_echo=json_echo, store=False
    )
    sink.feed("stdout", b"hello\n")
    target.close()
    (line,) = (tmp_path / "echo").read_text().splitlines()
    if json_echo:
        record = json.loads(line)
        assert (record["run_name"], record["message"], record["stream"]) == (
            "x\n" + FORGED,
            "hello",
            "stdout",
        )
    else:
        assert line == f"x{FORGED} | hello"
