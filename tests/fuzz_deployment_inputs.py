"""Hypothesis strategies for deployments and runs: entry points, ids, states, JSON, flags.

What ``deployment``/``run`` commands and the API take besides names and schedules: entry
points, run ids and states, JSON parameters (valid, edited, deeply nested, cyclic, not JSON
at all), and the command lines assembled from every input (``CREATE_FLAGS``,
``near_valid``, ``any_flags``, ``schedule_flags``, ``command_flags``). They build on
tests/fuzz_names.py and tests/fuzz_schedules.py and sit apart from them so each module holds
one kind of input.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from hypothesis import strategies as st

from runq.broker import StateType
from tests.fuzz_names import CHAR, COUNT, NAME, TEXT_CHAR, WILD, Value, mostly, mutated, value
from tests.fuzz_schedules import CRON, DURATION, INTERVAL, ISO_TIME, RRULE, TIMEZONE

# ---- strategies: deployment and run inputs -------------------------------------------

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


# ---- strategies: command lines -------------------------------------------------------

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
