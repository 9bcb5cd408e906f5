"""Bad input, generated: every refusal is one clean line and leaves Redis untouched.

Hand-written bad-input tests check the mistakes someone thought of. These let hypothesis
feed the CLI and the Python API random names, limits, parameters, YAML files, cron
strings, intervals, rrules, time zones and run ids: fully random text (control
characters, braces, lone surrogates, unicode, very long strings) and valid input with
one part broken, so that examples get past the first checks and reach the deep ones
(schedule materialization, state transitions, the YAML line finder). For every example:

- a refused CLI command exits 1 with exactly one printable line on stderr, or exits 2
  with Click's usage block (see :func:`assert_clean_refusal`); never a traceback;
- a refused API call raises one of runq's own exceptions, with a one-line message;
- the whole keyspace (every key's type, DUMP bytes and whether it expires) is identical
  before and after a refused command, but for a key whose time to live ran out by itself
  meanwhile (tests/keyspace.py): nothing half-done remains;
- what an accepted command stored can be read back.

Each example starts from the same seeded keyspace (a queue with a limit, a plain and a
scheduled deployment, runs SCHEDULED, RUNNING and COMPLETED), put back with RESTORE from
DUMPs taken once per test: examples are independent, so hypothesis can shrink a failure
to its smallest input. Runs are derandomized and bounded so CI is deterministic and
fast; ``RUNQ_FUZZ_RANDOM=1 RUNQ_FUZZ_EXAMPLES=2000`` searches further on a workstation,
and ``--hypothesis-show-statistics`` shows how often each kind of refusal was reached.

The bugs it found in the broker are kept at the end as plain regression tests.
"""

from __future__ import annotations

import json
import math
import os
import re
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import redis
import yaml
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from runq.broker import Broker, DeploymentExists, InvalidInput, RunqError, StateType
from runq.broker.api import ENV_SETTINGS
from runq.control.cli import cli
from tests.keyspace import Snapshot, changes, snapshot

FUZZ = settings(
    max_examples=int(os.environ.get("RUNQ_FUZZ_EXAMPLES", "100")),
    deadline=None,
    derandomize=not os.environ.get("RUNQ_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # the keyspace is reset per example instead
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# ---- the keyspace ---------------------------------------------------------------------

# Snapshots and their differences come from tests/keyspace.py: every key's type, DUMP
# bytes and whether it expires (the remaining TTL itself counts down between two
# snapshots); a key that ran out of time by itself in between is no write.
differences = changes


@dataclass
class World:
    """The seeded keyspace every example starts from, and the names and ids in it."""

    broker: Broker
    raw: redis.Redis
    baseline: list[tuple[bytes, int, bytes]]
    queue: str
    deployment: str
    scheduled_run: str
    running_run: str
    running_token: str
    done_run: str
    #: The seeded keyspace's snapshot, once taken.
    seeded: Snapshot | None = None
    #: Whether the keyspace may differ from the seeded one.
    dirty: bool = True

    def __repr__(self) -> str:
        return f"World(queue={self.queue!r}, runs={self.run_ids!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis' printer
        printer.text(repr(self))

    @property
    def run_ids(self) -> list[str]:
        return [self.scheduled_run, self.running_run, self.done_run]

    def reset(self) -> Snapshot:
        """Put the seeded keyspace back (one round trip) and return its snapshot.

        Skipped when the keyspace is known to be the seeded one: the last command was
        refused and the comparison after it found nothing changed.
        """
        if self.dirty or self.seeded is None:
            pipe = self.raw.pipeline(transaction=True)
            pipe.flushdb()
            for key, ttl, value in self.baseline:
                pipe.restore(key, ttl, value)
            pipe.execute()
            self.broker._run_queues.clear()  # its run -> queue cache must not outlive the data
            self.seeded, self.dirty = snapshot(self.raw), False
        return self.seeded

    def check_accepted(self, before: Snapshot) -> None:
        """What an accepted command wrote can be read back (a read-only one wrote nothing)."""
        if differences(before, snapshot(self.raw)):
            assert_readable(self.broker)
        else:
            self.dirty = before is not self.seeded

    def check_unchanged(self, before: Snapshot, what: str) -> None:
        """Assert a refused command changed nothing (then the keyspace may still be clean)."""
        changed = differences(before, snapshot(self.raw))
        assert not changed, f"{what} but changed {changed}"
        self.dirty = before is not self.seeded


def seed(broker: Broker) -> dict[str, Any]:
    """A queue with a limit, a plain and a scheduled deployment, runs in three states."""
    broker.create_work_queue("seeded", concurrency_limit=2, description="seeded queue")
    broker.create_deployment(
        name="plain-dep",
        entrypoint="flows/etl.py:main",
        work_queue_name="seeded",
        parameters={"n": 1, "region": "eu"},
        tags=["t"],
    )
    broker.create_deployment(
        name="cron-dep",
        entrypoint="pkg.mod:func",
        work_queue_name="seeded",
        schedule={"cron": "0 * * * *", "timezone": "Europe/Paris"},
    )
    later = broker.create_flow_run(deployment="plain-dep", start_in_seconds=7 * 86400)
    broker.create_flow_run(deployment="plain-dep")
    [running] = broker.claim("seeded", "agent-1", max_runs=1)
    broker.set_state(running.id, "RUNNING", token=running.claim_token)
    broker.create_flow_run(deployment="plain-dep")
    [done] = broker.claim("seeded", "agent-1", max_runs=1)
    broker.set_state(done.id, "RUNNING", token=done.claim_token)
    broker.set_state(done.id, "COMPLETED", token=done.claim_token)
    return dict(
        queue="seeded",
        deployment="plain-dep",
        scheduled_run=str(later.id),
        running_run=str(running.id),
        running_token=running.claim_token,
        done_run=str(done.id),
    )


@pytest.fixture
def world(broker: Broker, redis_url: str) -> Iterator[World]:
    raw = redis.Redis.from_url(redis_url)
    names = seed(broker)
    baseline = [(key, max(raw.pttl(key), 0), raw.dump(key)) for key in raw.scan_iter()]
    yield World(broker=broker, raw=raw, baseline=baseline, **names)
    raw.close()


# ---- checks ---------------------------------------------------------------------------


def terminal_lines(text: str) -> list[str]:
    """The lines a terminal shows: only newline and carriage return break a line.

    (``str.splitlines`` would also split at ``\\x1e`` or ``\\u2028``, which a terminal
    prints in place; :func:`assert_clean_refusal` refuses those as unprintable anyway.)
    """
    return text.replace("\r\n", "\n").replace("\r", "\n").removesuffix("\n").split("\n")


def one_line(message: str) -> bool:
    return bool(message.strip()) and len(terminal_lines(message)) == 1


def assert_clean_refusal(result: Result) -> None:
    """Exit 1: exactly one printable line on stderr. Exit 2: Click's usage block.

    Usage errors (exit 2) are Click's: ``Usage: ...``, ``Try '... -h' for help.``, a
    blank line and ``Error: <message>``. That block is accepted as Click prints it (the
    standard of every Click program); its ``Error:`` message must be one printable line
    like ours. No kind of refusal may ever show a traceback.
    """
    assert "Traceback" not in result.output, result.output
    assert result.exit_code in (1, 2), (result.exit_code, result.output)
    lines = terminal_lines(result.stderr)
    assert all(line.isprintable() for line in lines), repr(result.stderr)  # no raw ESC...
    if result.exit_code == 1 or len(lines) == 1:
        assert len(lines) == 1 and lines[0].strip(), repr(result.stderr)
        return
    assert lines[0].startswith("Usage: "), repr(result.stderr)
    errors = [line for line in lines if line.startswith("Error: ")]
    assert errors == [lines[-1]] and lines[-1].removeprefix("Error: ").strip(), repr(result.stderr)
    assert len(lines) <= 4, repr(result.stderr)


def assert_readable(broker: Broker) -> None:
    """What an accepted command stored can be read back by every reader."""
    for queue in broker.list_work_queues():
        broker.read_work_queue(queue.name)
    for name in broker.client.hkeys(broker.keys.deployment_names):
        broker.read_deployment(name)
    broker.list_flow_runs(limit=1000)


def gist(message: str) -> str:
    """A message without what it quotes, to count refusals by kind."""
    return re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", message.split(": ")[0])[:60]


def count(kind: str) -> None:
    """Count an outcome for ``--hypothesis-show-statistics`` (inside examples only)."""
    if currently_in_test_context():
        event(kind)


CLI_ENV: dict[str, str | None] = {
    **{var: None for var in ENV_SETTINGS.values()},
    "RUNQ_DEBUG": None,
    "RUNQ_REDIS_CLUSTER": None,
    "COLUMNS": None,
}


def run_cli(world: World, args: list[str], *, reset: bool = True) -> Result:
    """``runq ARGS`` in-process on the test Redis: refused cleanly and harmlessly, or accepted.

    The keyspace is the seeded one first, unless ``reset`` is False (a follow-up command).
    """
    before = world.reset() if reset else snapshot(world.raw)
    world.dirty = True  # until the command is known to have changed nothing
    env = {**CLI_ENV, "RUNQ_API_URL": world.broker.url}
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(result.exception))
        pytest.fail(f"runq {args!r} raised instead of failing cleanly:\n{trace}")
    refusal = f"exit {result.exit_code} {gist(terminal_lines(result.stderr)[-1])}"
    count(f"runq {' '.join(args[:2])}: {refusal if result.exit_code else 'accepted'}")
    if result.exit_code == 0:
        assert "Traceback" not in result.output
        world.check_accepted(before)
        return result
    assert_clean_refusal(result)
    world.check_unchanged(before, f"runq {args!r} was refused ({result.stderr!r})")
    return result


def call_api(world: World, action: Callable[[Broker], Any]) -> Any:
    """Run one API call: runq's own one-line exception and no change, or success."""
    before = world.reset()
    world.dirty = True  # until the call is known to have changed nothing
    try:
        value = action(world.broker)
    except RunqError as error:
        count(f"{type(error).__name__}: {gist(str(error))}")
        assert one_line(str(error)), repr(str(error))
        world.check_unchanged(before, f"refused with {error!r}")
        return error
    count("accepted")
    world.check_accepted(before)
    return value


# ---- strategies: text -----------------------------------------------------------------

#: Characters that break parsers, key names, terminals and JSON, plus ordinary ones.
TRICKY = st.sampled_from(
    list("{}[]:;,.*/?-_=#@!$%^&|\\'\"` \t\n\r")
    + ["\x00", "\x1b", "\x7f", "\u200b", "\u00a0", "\u2028", "é", "中", "😀", "\ufeff"]
)
#: Any character, lone surrogates included: Python decodes argv bytes that are not UTF-8
#: into them, and JSON's "\ud800" escape makes them too.
CHAR = st.one_of(TRICKY, st.characters())
#: Any character a str of real text holds (no lone surrogates).
TEXT_CHAR = st.one_of(TRICKY, st.characters(exclude_categories=["Cs"]))


def wild(char: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Anything at all made of ``char``, short or very long, and a few classics."""
    return st.one_of(
        st.text(char, max_size=40),
        st.text(char, min_size=100, max_size=600),
        st.sampled_from(["", " ", "-", "--", "-1", "--help", "{}", "{q:x}", "null", "\x00"]),
    )


WILD = wild(CHAR)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    """A valid value with one to three edits: past the first checks, not the last."""
    text = draw(base)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "delete", "replace", "repeat", "case", "pad"]))
        if edit == "insert":
            text = text[:at] + draw(CHAR) + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + 1 :]
        elif edit == "replace":
            text = text[:at] + draw(st.text(CHAR, min_size=1, max_size=3)) + text[at + 1 :]
        elif edit == "repeat":
            text = text[:at] + text[at:] * draw(st.integers(2, 30))
        elif edit == "case":
            text = text.swapcase()
        else:
            text = draw(st.sampled_from([" ", "\t", "\n", "0", "-"])) + text
    return text


class Value(NamedTuple):
    """How to draw one input: a valid value, or anything (valid, edited, edge, noise)."""

    valid: st.SearchStrategy[Any]
    any: st.SearchStrategy[Any]


def value(
    valid: st.SearchStrategy[str], *edges: str, noise: st.SearchStrategy[str] = WILD
) -> Value:
    """A text input: ``any`` is valid, valid edited, a known edge case or noise."""
    options = [valid, mutated(valid), noise, *([st.sampled_from(edges)] if edges else [])]
    return Value(valid, st.one_of(options))


def mostly(known: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``known`` half the time (one_of would weigh it by its share of branches)."""
    return st.booleans().flatmap(lambda pick: known if pick else other)


# ---- strategies: the inputs -----------------------------------------------------------

NAME = value(
    st.from_regex(r"[a-z][a-z0-9_. -]{0,20}", fullmatch=True),
    "seeded",
    "plain-dep",
    "cron-dep",
    "default",
    "x" * 100,
    "x" * 101,
    "é" * 100,
    "a{b",
    "a}b",
    "a:b",
    "  ",
    "a\nb",
    "\u200b",
    "😀",
    "[bold]x[/bold]",
    "%s",
    "*",
)
NAMES = NAME.any
TEXT_NAMES = value(NAME.valid, "seeded", "a{b", "a:b", " ", noise=WILD).any
DEPLOYMENTS = mostly(st.sampled_from(["plain-dep", "cron-dep"]), NAMES)
INTEGER_TEXT = st.one_of(
    st.integers().map(str),
    st.integers(-3, 3).map(str),
    st.sampled_from(["1.5", "1e3", "", " 3 ", "+2", "-0", "1_000", "٣", "0x10", "99" * 20]),
    WILD,
)
COUNT = Value(st.integers(0, 5).map(str), INTEGER_TEXT)
DURATION = value(
    st.one_of(
        st.integers(0, 10**6).map(str),
        st.from_regex(
            r"([1-9][0-9]?d)?([1-9]h)?([1-9][0-9]?m)?([1-9][0-9]?s)?", fullmatch=True
        ).filter(bool),
    ),
    "0",
    "nan",
    "inf",
    "-1",
    "1e400",
    "1e300",
    "1e18",
    "1h 30m",
    "0.0000001",
    "99999999999d",
    "1.5h",
)
ISO_TIME = value(
    st.datetimes(
        min_value=datetime(1, 1, 3),
        max_value=datetime(9999, 12, 29),
        timezones=st.none() | st.timezones(),
    ).map(lambda moment: moment.isoformat()),
    "0001-01-01T00:00:00",
    "9999-12-31T23:59:59",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",
    "2026-03-08T02:30",
    "2026-13-01",
    "2026-03-08",
)
TIMEZONE = value(
    st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Pacific/Apia"]),
    "",
    "utc",
    "UTC ",
    "Etc/GMT+14",
    "Etc/GMT-14",
    "EST5EDT",
    "localtime",
    "posixrules",
    "/etc/localtime",
    "../../etc/passwd",
    "Europe/Paris\x00",
    "Europe",
    "Factory",
    "Europe/Paris" * 50,
    "a/" * 400,
)
CRON = value(
    st.builds(
        lambda *fields: " ".join(fields),
        st.sampled_from(["0", "*/5", "15,45", "*", "0-59/20"]),
        st.sampled_from(["*", "9", "*/2", "1-23/2", "0,12"]),
        st.sampled_from(["*", "1", "L", "15W", "1-7"]),
        st.sampled_from(["*", "1", "jan", "*/3", "2"]),
        st.sampled_from(["*", "1-5", "mon", "5#3", "5L", "0"]),
    ),
    "@hourly",
    "@daily",
    "@reboot",
    "* * * * * *",
    "0 0 30 2 *",
    "R * * * *",
    "0 0 31 4 *",
    "0 0 1 1 * 0 2019",
    "0 0 1 1 * 0 2099",
    "*/0 * * * *",
    "60 * * * *",
    "0 24 * * *",
    "99999999999999999999 * * * *",
    "0 0 29 2 1",
    "* * * * 8",
    "0 0 0 * *",
)
INTERVAL = value(
    st.one_of(
        st.floats(min_value=1, max_value=10**7).map(str),
        st.from_regex(
            r"([1-9]w)?([1-9]d)?([1-9]h)?([1-9][0-9]?m)?([1-9][0-9]?s)?", fullmatch=True
        ).filter(bool),
    ),
    "0",
    "-60",
    "1e-7",
    "0.000001",
    "0.001",
    "1e300",
    "1e400",
    "nan",
    "inf",
    "1h 30m",
    "30m1h",
    "99999999999999w",
    "1e15",
    "1e12",
)
RRULE = value(
    st.builds(
        lambda freq, extra: f"FREQ={freq}{extra}",
        st.sampled_from(["SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY"]),
        st.sampled_from(
            [
                "",
                ";BYHOUR=9",
                ";INTERVAL=2",
                ";COUNT=3",
                ";BYDAY=MO,FR",
                ";BYMONTHDAY=31",
                ";UNTIL=20300101T000000Z",
                ";BYSETPOS=-1;BYDAY=MO",
            ]
        ),
    ),
    "DTSTART:20260101T090000 RRULE:FREQ=WEEKLY",
    "DTSTART;TZID=Europe/Paris:20260101T090000\nRRULE:FREQ=DAILY",
    "DTSTART:20260101T090000Z\\nRRULE:FREQ=DAILY",
    "FREQ=DAILY;UNTIL=20000101T000000Z",
    "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
    "FREQ=MINUTELY;BYMONTHDAY=311",
    "FREQ=DAILY;INTERVAL=0",
    "FREQ=DAILY;COUNT=0",
    "FREQ=DAILY;BYHOUR=25",
    "RRULE:",
    "EXDATE:x",
    "DTSTART:99991231T235959\nRRULE:FREQ=SECONDLY",
    "DTSTART:00010101T000000\nRRULE:FREQ=YEARLY",
    "FREQ=DAILY;INTERVAL=99999999999999999999",
    "FREQ=DAILY;UNTIL=99991231T235959Z",
    "RRULE:FREQ=DAILY\nEXRULE:FREQ=DAILY;INTERVAL=0",
)
ENTRYPOINT = value(
    st.one_of(
        st.from_regex(
            r"[a-z_][a-z0-9_]{0,6}(/[a-z_][a-z0-9_]{0,6}){0,2}\.py:[a-z_][a-z0-9_]{0,6}",
            fullmatch=True,
        ),
        st.from_regex(
            r"[a-z_][a-z0-9_]{0,6}(\.[a-z_][a-z0-9_]{0,6}){0,2}:[a-z_][a-z0-9_]{0,6}",
            fullmatch=True,
        ),
    ),
    "a.py:",
    ":f",
    "a.py:f:g",
    "../x.py:f",
    "a b.py:f",
)
RUN_ID = value(
    st.uuids().map(str), "00000000-0000-0000-0000-000000000000", "not-a-uuid", "{}", "urn:uuid:"
).any
STATE = value(st.sampled_from([state.value for state in StateType]), "pending", "Late")

JSON_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(CHAR, max_size=20),
)
JSON_KEY = st.text(CHAR, max_size=8)
JSON_VALUE = st.recursive(
    JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(JSON_KEY, inner, max_size=3),
    max_leaves=8,
)
#: JSON text: valid, valid edited, deeply nested, non-finite numbers, or anything.
JSON_TEXT = st.one_of(
    JSON_VALUE.map(json.dumps),
    mutated(JSON_VALUE.map(json.dumps)),
    st.integers(1, 5000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 5000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "1e400",
            "[1e400]",
            '{"a": NaN}',
            "",
            '{"a": 1, "a": 2}',
            "1" * 5000,
            '"\\ud800"',
            "{}",
            "[]",
        ]
    ),
    WILD,
)
PAIR = value(
    st.builds(
        lambda k, v: f"{k}={v}",
        st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
        JSON_VALUE.map(json.dumps),
    ),
    noise=st.one_of(WILD, st.builds(lambda k, v: f"{k}={v}", JSON_KEY, JSON_TEXT)),
)


def nested(depth: int) -> list[Any]:
    """``[[[...]]]``, ``depth`` lists deep (built without recursion)."""
    data: list[Any] = []
    for _ in range(depth):
        data = [data]
    return data


def cyclic() -> list[Any]:
    """A list that contains itself."""
    data: list[Any] = []
    data.append(data)
    return data


#: Parameters for the API: JSON objects, and what is not JSON at all.
PARAMETERS = st.one_of(
    st.dictionaries(JSON_KEY, JSON_VALUE, max_size=3),
    st.dictionaries(
        st.text(max_size=3),
        st.sampled_from([math.nan, math.inf, b"\x80", {1, 2}, object(), datetime(2024, 1, 1)]),
        min_size=1,
        max_size=1,
    ),
    st.just({1: "a"}),
    st.integers(1, 2000).map(lambda depth: {"a": nested(depth)}),
    st.just({"a": cyclic()}),
)


# ---- strategies: command lines ----------------------------------------------------------

#: The flags of ``deployment create`` besides its schedule.
CREATE_FLAGS: dict[str, Value] = {
    "-q": NAME,
    "--param": PAIR,
    "--params-json": Value(
        st.dictionaries(JSON_KEY, JSON_VALUE, max_size=3).map(json.dumps), JSON_TEXT
    ),
    "--infra": value(st.sampled_from(["process", "docker", "kubernetes"])),
    "--image": value(st.from_regex(r"[a-z]{1,8}(:[0-9.]{1,4})?", fullmatch=True)),
    "--env": value(
        st.builds(
            lambda k, v: f"{k}={v}",
            st.from_regex(r"[A-Z_]{1,8}", fullmatch=True),
            st.text(TEXT_CHAR, max_size=10),
        )
    ),
    "--tag": value(NAME.valid),
    "--retries": COUNT,
    "--retry-delay": DURATION,
    "-d": Value(st.text(TEXT_CHAR, max_size=30), WILD),
    "--skip-if-late-by": DURATION,
}
SCHEDULE_KINDS: dict[str, Value] = {"--cron": CRON, "--interval": INTERVAL, "--rrule": RRULE}


@st.composite
def near_valid(draw: st.DrawFn, table: dict[str, Value], most: int = 4) -> list[str]:
    """A few flags of ``table``, valid but for at most one of them, which is anything."""
    chosen = draw(st.lists(st.sampled_from(sorted(table)), max_size=most, unique=True))
    broken = draw(st.sampled_from([None, *chosen]))
    args: list[str] = []
    for flag in chosen:
        args += [flag, draw(table[flag].any if flag == broken else table[flag].valid)]
    return args


@st.composite
def any_flags(draw: st.DrawFn, table: dict[str, Value], most: int = 4) -> list[str]:
    """Flags of ``table`` (repeats allowed) with any values, maybe a stray switch."""
    args: list[str] = []
    for flag in draw(st.lists(st.sampled_from(sorted(table)), max_size=most)):
        args += [flag, draw(table[flag].any)]
    if draw(st.booleans()):
        args.append(draw(st.sampled_from(["--day-or", "--day-and", "-o", "--bogus"])))
    return args


@st.composite
def schedule_flags(draw: st.DrawFn) -> list[str]:
    """One schedule kind with its details, each part valid or anything."""
    kind = draw(st.sampled_from(sorted(SCHEDULE_KINDS)))
    table = {kind: SCHEDULE_KINDS[kind], "--timezone": TIMEZONE}
    if kind == "--interval":
        table["--anchor"] = ISO_TIME
    args = draw(near_valid(table, most=3))
    if kind not in args:
        args += [kind, draw(SCHEDULE_KINDS[kind].valid)]
    if kind == "--cron" and draw(st.booleans()):
        args.append(draw(st.sampled_from(["--day-or", "--day-and"])))
    return args


def command_flags(table: dict[str, Value]) -> st.SearchStrategy[list[str]]:
    """Near-valid flags half the time, any flags the other half."""
    return mostly(near_valid(table), any_flags(table))


# ---- the CLI: work queues -------------------------------------------------------------


@FUZZ
@given(name=NAMES, limit=st.none() | COUNT.any, description=st.none() | WILD)
def test_work_queue_create(
    world: World, name: str, limit: str | None, description: str | None
) -> None:
    args = ["work-queue", "create", name]
    args += [] if limit is None else ["--limit", limit]
    args += [] if description is None else ["-d", description]
    if run_cli(world, args).exit_code == 0:  # what was created can be named again
        assert run_cli(world, ["work-queue", "inspect", name], reset=False).exit_code == 0


@FUZZ
@given(
    command=st.sampled_from(
        [
            "inspect",
            "preview",
            "delete",
            "pause",
            "resume",
            "clear-concurrency-limit",
            "set-concurrency-limit",
            "ls",
        ]
    ),
    name=mostly(st.just("seeded"), NAMES),
    extra=st.lists(
        st.one_of(
            INTEGER_TEXT,
            st.sampled_from(["--force", "--hours", "-o", "json", "-m", "inf", "nan", "1e308"]),
        ),
        max_size=3,
    ),
)
def test_work_queue_commands(world: World, command: str, name: str, extra: list[str]) -> None:
    run_cli(world, ["work-queue", command, *(["-m"] if command == "ls" else []), name, *extra])


# ---- the CLI: deployments -------------------------------------------------------------


@FUZZ
@given(
    name=mostly(NAME.valid, NAMES),
    entrypoint=mostly(ENTRYPOINT.valid, ENTRYPOINT.any),
    extra=command_flags(CREATE_FLAGS),
    schedule=st.none()
    | schedule_flags()
    | any_flags({**SCHEDULE_KINDS, "--timezone": TIMEZONE, "--anchor": ISO_TIME}),
    container=st.booleans(),
)
def test_deployment_create(
    world: World,
    name: str,
    entrypoint: str,
    extra: list[str],
    schedule: list[str] | None,
    container: bool,
) -> None:
    args = ["deployment", "create", name, "--entrypoint", entrypoint, *extra, *(schedule or [])]
    if container and "--image" in args:
        args += ["--infra", "docker"]  # else --image is a usage error on the process default
    run_cli(world, args)


@FUZZ
@given(
    name=DEPLOYMENTS,
    params=st.lists(PAIR.any, max_size=3),
    timing=st.lists(
        st.tuples(st.sampled_from(["--start-in", "--start-at"]), DURATION.any | ISO_TIME.any),
        max_size=2,
    ),
)
def test_deployment_run(
    world: World, name: str, params: list[str], timing: list[tuple[str, str]]
) -> None:
    args = ["deployment", "run", name]
    for param in params:
        args += ["--param", param]
    for flag, text in timing:
        args += [flag, text]
    run_cli(world, args)


@FUZZ
@given(
    command=st.sampled_from(
        [
            "inspect",
            "delete",
            "set-work-queue",
            "set-schedule",
            "clear-schedule",
            "pause-schedule",
            "resume-schedule",
            "ls",
        ]
    ),
    name=DEPLOYMENTS,
    schedule=schedule_flags(),
    queue=NAMES,
)
def test_deployment_commands(
    world: World, command: str, name: str, schedule: list[str], queue: str
) -> None:
    args = ["deployment", command, *([] if command == "ls" else [name])]
    if command == "set-work-queue":
        args.append(queue)
    elif command == "set-schedule":
        args += schedule
    run_cli(world, args)


# ---- the CLI: deployment files ---------------------------------------------------------

STRING_MAP = st.dictionaries(
    st.from_regex(r"[A-Za-z_]{1,8}", fullmatch=True), st.text(TEXT_CHAR, max_size=8), max_size=2
)
INFRASTRUCTURE = Value(
    st.one_of(
        st.fixed_dictionaries(
            {"type": st.just("process")},
            optional={"env": STRING_MAP, "stream_output": st.booleans()},
        ),
        st.fixed_dictionaries(
            {"type": st.just("docker")},
            optional={
                "image": CREATE_FLAGS["--image"].valid,
                "env": STRING_MAP,
                "labels": STRING_MAP,
                "auto_remove": st.booleans(),
                "image_pull_policy": st.sampled_from(["always", "if-not-present", "never"]),
            },
        ),
        st.fixed_dictionaries(
            {"type": st.just("kubernetes")},
            optional={
                "namespace": NAME.valid.filter(str.isalnum),
                "backoff_limit": st.integers(0, 5),
                "image_pull_policy": st.sampled_from(["Always", "IfNotPresent", "Never"]),
                "pod_watch_timeout_seconds": st.integers(1, 600),
                "customizations": st.lists(
                    st.dictionaries(JSON_KEY, JSON_VALUE, max_size=2), max_size=2
                ),
            },
        ),
    ),
    st.one_of(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["process", "docker", "kubernetes", "ssh", None, 1])},
            optional={
                "image": WILD,
                "env": st.dictionaries(JSON_KEY, JSON_SCALAR, max_size=2),
                "command": st.lists(WILD, max_size=2) | WILD,
                "namespace": WILD,
                "image_pull_policy": st.sampled_from(["always", "Always", "never", "sometimes"]),
                "backoff_limit": st.integers(),
                "pod_watch_timeout_seconds": st.integers(),
                "labels": JSON_VALUE,
                "volumes": JSON_VALUE,
                "auto_remove": JSON_SCALAR,
                "customizations": JSON_VALUE,
                "resources": JSON_VALUE,
                "extra_field": JSON_SCALAR,
            },
        ),
        JSON_VALUE,
    ),
)
SCHEDULE = Value(
    st.one_of(
        st.fixed_dictionaries({"cron": CRON.valid}, optional={"timezone": TIMEZONE.valid}),
        st.fixed_dictionaries(
            {"interval": st.floats(1, 1e6) | INTERVAL.valid},
            optional={"timezone": TIMEZONE.valid, "anchor_date": ISO_TIME.valid},
        ),
        st.fixed_dictionaries({"rrule": RRULE.valid}, optional={"timezone": TIMEZONE.valid}),
    ),
    st.one_of(
        st.fixed_dictionaries(
            {"cron": CRON.any}, optional={"timezone": TIMEZONE.any, "day_or": JSON_SCALAR}
        ),
        st.fixed_dictionaries(
            {"interval": INTERVAL.any | JSON_SCALAR},
            optional={"timezone": TIMEZONE.any, "anchor_date": ISO_TIME.any | JSON_SCALAR},
        ),
        st.fixed_dictionaries({"rrule": RRULE.any}, optional={"timezone": TIMEZONE.any}),
        st.fixed_dictionaries(
            {"type": st.sampled_from(["cron", "interval", "rrule", "daily"])},
            optional={"cron": CRON.any, "interval": INTERVAL.any, "rrule": RRULE.any},
        ),
        JSON_VALUE,
    ),
)


def field(valid: st.SearchStrategy[Any], wrong: st.SearchStrategy[Any]) -> Value:
    """A YAML field: valid, or anything including the wrong type."""
    return Value(valid, st.one_of(valid, wrong, JSON_SCALAR))


#: The fields of a deployment file (DeploymentSpec) besides its name and entrypoint.
SPEC_FIELDS: dict[str, Value] = {
    "command": field(st.lists(NAME.valid, min_size=1, max_size=2), st.lists(WILD, max_size=2)),
    "flow_name": field(NAME.valid, WILD),
    "parameters": field(st.dictionaries(JSON_KEY, JSON_VALUE, max_size=3), JSON_VALUE),
    "work_queue_name": field(NAME.valid, NAMES),
    "infrastructure": field(INFRASTRUCTURE.valid, INFRASTRUCTURE.any),
    "tags": field(st.lists(NAME.valid, max_size=2), st.lists(WILD, max_size=2) | JSON_VALUE),
    "retries": field(st.integers(0, 5), st.integers()),
    "retry_delay_seconds": field(st.floats(0, 3600), st.floats()),
    "description": field(st.text(TEXT_CHAR, max_size=30), WILD),
    "schedule": field(SCHEDULE.valid, SCHEDULE.any),
    "is_schedule_active": field(st.booleans(), JSON_SCALAR),
    "skip_if_late_by_seconds": field(st.floats(0, 1e6), st.floats()),
    "unknown_field": field(st.nothing(), JSON_SCALAR),
}


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    """A deployment file's fields: valid but for at most one (name and entrypoint too)."""
    table = {
        "name": field(st.sampled_from(["plain-dep", "new-dep"]) | NAME.valid, NAMES),
        "entrypoint": field(ENTRYPOINT.valid, ENTRYPOINT.any),
        **SPEC_FIELDS,
    }
    optional = sorted(set(SPEC_FIELDS) - {"command", "unknown_field"})
    chosen = ["name", "entrypoint", *draw(st.lists(st.sampled_from(optional), unique=True))]
    broken = draw(st.sampled_from([None, *chosen, "command", "unknown_field"]))
    fields = {key: draw(table[key].valid) for key in chosen if key != broken}
    if broken is not None:
        fields[broken] = draw(table[broken].any)
    return fields


#: YAML that only YAML can say: tags, anchors, merges, recursion, deep nesting, bad bytes.
YAML_EDGES = st.sampled_from(
    [
        "",
        "---\n...\n",
        "- a\n- b\n",
        "name: [",
        "name: !!python/object:os.system x\n",
        "name: x\nname: y\nentrypoint: a.py:f\n",
        "name: x\nentrypoint: a.py:f\nparameters: &p {a: *p}\n",
        "name: x\nentrypoint: a.py:f\nparameters: {a: &l [*l]}\n",
        "name: x\nentrypoint: a.py:f\nparameters: {b: !!binary gIGC}\n",
        "name: x\nentrypoint: a.py:f\nparameters: {d: 2024-05-01, t: 2024-05-01T10:00:00}\n",
        "name: x\nentrypoint: a.py:f\nparameters: {n: .nan, i: .inf}\n",
        "name: x\nentrypoint: a.py:f\nparameters: {s: !!set {a, b}}\n",
        "name: x\nentrypoint: a.py:f\nparameters: {1: a}\n",
        "name: x\nentrypoint: a.py:f\nparameters: {? [a, b] : c}\n",
        'name: x\nentrypoint: a.py:f\nparameters: {u: "\\ud800"}\n',
        'name: x\nentrypoint: a.py:f\ndescription: "\\ud800"\n',
        "name: x\nentrypoint: a.py:f\n"
        "infrastructure: {type: kubernetes, customizations: &c [*c]}\n",
        "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e]\n"
        "name: x\nentrypoint: a.py:f\nparameters: {bomb: [*f, *f, *f, *f, *f, *f, *f, *f]}\n",
        "base: &b {entrypoint: a.py:f}\nname: x\n<<: *b\n",
        "name: x\nentrypoint: a.py:f\nretries: 99999999999999999999999999\n",
        "name: x\nentrypoint: a.py:f\nretry_delay_seconds: .inf\n",
        "name: x\nentrypoint: a.py:f\nskip_if_late_by_seconds: .nan\n",
        "name: x\nentrypoint: a.py:f\nschedule: {interval: .inf}\n",
        "name: x\nentrypoint: a.py:f\nschedule: {interval: 1e300}\n",
        "name: x\nentrypoint: a.py:f\nschedule: {interval: 1, anchor_date: 0001-01-01}\n",
        "name: x\nentrypoint: a.py:f\nschedule: {interval: 86400, anchor_date: 9999-12-31}\n",
        "name: x\nentrypoint: a.py:f\nschedule: {rrule: 'FREQ=DAILY;INTERVAL=0'}\n",
        "name: x\nentrypoint: a.py:f\nskip_if_late_by_seconds: 1e300\n",
        "\ufeffname: x\nentrypoint: a.py:f\n",
        "name: x\tentrypoint: a.py:f\n",
        "\x1fname: x\n",
    ]
)


@st.composite
def yaml_files(draw: st.DrawFn) -> bytes:
    """A deployment file: a near-valid spec as YAML, that text edited, YAML's corner
    cases, deep nesting, or bytes."""
    choice = draw(st.sampled_from(["spec", "spec", "edited", "edge", "deep", "bytes"]))
    if choice == "edge":
        return draw(YAML_EDGES).encode()
    if choice == "deep":
        depth = draw(st.integers(1, 3000))
        nesting = "[" * depth + "]" * depth
        return f"name: x\nentrypoint: a.py:f\nparameters: {{a: {nesting}}}\n".encode()
    if choice == "bytes":
        return draw(st.binary(max_size=200))
    text = yaml.safe_dump(draw(specs()), allow_unicode=draw(st.booleans()))
    if choice == "edited":
        text = draw(mutated(st.just(text)))
    return text.encode("utf-8", "surrogatepass")


@FUZZ
@given(content=yaml_files())
def test_deployment_apply(world: World, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "deployment.yaml"
    path.write_bytes(content)
    run_cli(world, ["deployment", "apply", str(path)])


# ---- the CLI: flow runs and schedules ---------------------------------------------------


@FUZZ
@given(
    command=st.sampled_from(["inspect", "cancel", "logs"]),
    choice=st.integers(0, 4),
    run_id=RUN_ID,
    form=st.sampled_from(["plain", "upper", "braces", "urn", "hex", "padded"]),
)
def test_flow_run_commands(world: World, command: str, choice: int, run_id: str, form: str) -> None:
    if choice < len(world.run_ids):  # a run of the seeded keyspace, as people write ids
        known = uuid.UUID(world.run_ids[choice])
        run_id = {
            "plain": str(known),
            "upper": str(known).upper(),
            "braces": f"{{{known}}}",
            "urn": known.urn,
            "hex": known.hex,
            "padded": f" {known} ",
        }[form]
    run_cli(world, ["flow-run", command, run_id])


@FUZZ
@given(
    extra=command_flags(
        {
            "--queue": NAME,
            "--state": STATE,
            "--deployment": Value(st.sampled_from(["plain-dep", "cron-dep"]), NAMES | RUN_ID),
            "--limit": Value(st.integers(1, 50).map(str), INTEGER_TEXT),
            "-o": value(st.sampled_from(["json", "table"])),
        }
    )
)
def test_flow_run_ls(world: World, extra: list[str]) -> None:
    run_cli(world, ["flow-run", "ls", *extra])


@FUZZ
@given(
    schedule=mostly(
        schedule_flags(),
        any_flags({**SCHEDULE_KINDS, "--timezone": TIMEZONE, "--anchor": ISO_TIME}),
    ),
    extra=command_flags(
        {
            "--start": ISO_TIME,
            "-n": Value(st.integers(1, 50).map(str), INTEGER_TEXT),
            "-o": value(st.sampled_from(["json", "table"])),
        }
    ),
)
def test_schedule_preview(world: World, schedule: list[str], extra: list[str]) -> None:
    run_cli(world, ["schedule", "preview", *schedule, *extra])


# ---- the Python API -------------------------------------------------------------------

ANY_LIMIT = st.one_of(
    st.none(), st.integers(), st.integers(-2, 5), st.floats(), st.booleans(), st.text(max_size=5)
)


@FUZZ
@given(
    name=NAMES,
    limit=ANY_LIMIT,
    description=WILD,
    other=mostly(st.just("seeded"), TEXT_NAMES),
    hours=st.floats(min_value=-10, max_value=1e300),  # inf and nan: test_api_preview_hours
)
def test_api_work_queues(
    world: World, name: str, limit: Any, description: str, other: str, hours: float
) -> None:
    create = dict(concurrency_limit=limit, description=description)
    call_api(world, lambda b: b.create_work_queue(name, **create))
    call_api(world, lambda b: b.set_concurrency_limit(name, limit))
    call_api(world, lambda b: b.set_concurrency_limit(world.queue, limit))
    call_api(world, lambda b: b.read_work_queue(other))
    call_api(world, lambda b: b.preview(other, hours=hours))
    call_api(world, lambda b: b.delete_work_queue(other))


@st.composite
def deployment_fields(draw: st.DrawFn) -> dict[str, Any]:
    """Keyword arguments of create_deployment: valid but for at most one."""
    fields = draw(specs())
    if draw(st.booleans()):
        fields["parameters"] = draw(PARAMETERS)  # what YAML cannot hold: NaN, objects, cycles
    return fields


@FUZZ
@given(fields=deployment_fields(), changes=deployment_fields())
def test_api_deployments(world: World, fields: dict[str, Any], changes: dict[str, Any]) -> None:
    call_api(world, lambda b: b.create_deployment(**fields))
    changes.pop("name", None)
    call_api(world, lambda b: b.update_deployment(world.deployment, **changes))


MOMENTS = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.none() | st.timezones(),
    ),
)
SECONDS = st.one_of(st.floats(), st.floats(0, 10**6), st.sampled_from([1e300, 1e18, 1e15]))


@FUZZ
@given(
    queue=st.none() | NAMES,
    deployment=st.none() | mostly(st.sampled_from(["plain-dep", "cron-dep"]), TEXT_NAMES),
    parameters=st.none() | PARAMETERS,
    when=MOMENTS,
    start_in=SECONDS,
    key=st.none() | WILD,
    tags=st.lists(WILD, max_size=2),
    name=st.none() | WILD,
)
def test_api_create_flow_run(
    world: World,
    queue: str | None,
    deployment: str | None,
    parameters: Any,
    when: datetime | None,
    start_in: float,
    key: str | None,
    tags: list[str],
    name: str | None,
) -> None:
    call_api(
        world,
        lambda b: b.create_flow_run(
            queue,
            deployment=deployment,
            parameters=parameters,
            scheduled_start_time=when,
            start_in_seconds=start_in,
            idempotency_key=key,
            tags=tags,
            name=name,
        ),
    )


STATES = st.one_of(STATE.any, st.sampled_from(list(StateType)))


@FUZZ
@given(
    choice=st.integers(0, 4),
    run_id=RUN_ID,
    state=STATES,
    token=st.none() | st.integers() | st.just(-1),
    from_states=st.none() | st.lists(STATES, max_size=3),
    when=MOMENTS,
    message=st.none() | WILD,
    name=st.none() | WILD,
)
def test_api_flow_runs(
    world: World,
    choice: int,
    run_id: str,
    state: Any,
    token: int | None,
    from_states: list[Any] | None,
    when: datetime | None,
    message: str | None,
    name: str | None,
) -> None:
    if choice < len(world.run_ids):
        run_id = world.run_ids[choice]
        if choice == 1 and token == -1:
            token = world.running_token  # the RUNNING run's real fencing token
    call_api(world, lambda b: b.read_flow_run(run_id))
    call_api(world, lambda b: b.cancel_flow_run(run_id, message=message))
    call_api(world, lambda b: b.read_logs(run_id))
    call_api(world, lambda b: b.list_flow_runs(states=from_states, limit=5))
    call_api(
        world,
        lambda b: b.set_state(
            run_id,
            state,
            token=token,
            from_states=from_states,
            scheduled_start_time=when,
            message=message,
            name=name,
        ),
    )


# ---- bugs this test found in broker/api.py, kept as plain regression tests ------------


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.create_work_queue("fresh", description="\udcff"),
        lambda b: b.read_work_queue("\udcff"),
        lambda b: b.read_deployment("\udcff"),
        lambda b: b.cancel_flow_run(b.list_flow_runs(states=["SCHEDULED"])[0].id, message="\udcff"),
    ],
    ids=["queue-description", "queue-lookup", "deployment-lookup", "state-message"],
)
def test_api_lone_surrogates(world: World, call: Callable[[Broker], Any]) -> None:
    """Text with a lone surrogate (undecodable bytes, "\\udcff") is refused up front."""
    assert isinstance(call_api(world, call), InvalidInput)


def test_api_create_deployment_of_a_taken_name(world: World) -> None:
    """A taken name is refused before the deployment's new work queue is created."""
    error = call_api(
        world,
        lambda b: b.create_deployment(name="plain-dep", entrypoint="a.py:f", work_queue_name="new"),
    )
    assert isinstance(error, DeploymentExists)


@pytest.mark.parametrize("hours", [math.inf, math.nan, -1.0], ids=["inf", "nan", "negative"])
def test_api_preview_hours(world: World, hours: float) -> None:
    assert isinstance(call_api(world, lambda b: b.preview(world.queue, hours=hours)), InvalidInput)


@pytest.mark.parametrize("limit", [0, -5, 10**20])
def test_api_list_limit(world: World, limit: int) -> None:
    assert isinstance(call_api(world, lambda b: b.list_flow_runs(limit=limit)), InvalidInput)
