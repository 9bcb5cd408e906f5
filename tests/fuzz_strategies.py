"""Hypothesis strategies for the fuzz tests: wild text, near-valid inputs, command lines."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, NamedTuple

from hypothesis import strategies as st

from runq.broker import StateType

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
