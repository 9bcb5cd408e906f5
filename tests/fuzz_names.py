"""Hypothesis strategies for text, names and queue counts: the fuzz tests' building blocks.

The characters that break parsers (``TRICKY``, ``CHAR``, ``WILD``), edits of valid values
(``mutated``), the valid-or-anything pair every input is drawn from (``Value``, ``value``,
``mostly``), and the inputs of names and counts that the queue commands take and every
other command reuses. They sit apart from tests/fuzz_schedules.py and
tests/fuzz_deployment_inputs.py, which build on them, so that each module holds one kind of
input and stays short.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from hypothesis import strategies as st

# ---- strategies: text ----------------------------------------------------------------

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


# ---- strategies: names and counts ----------------------------------------------------

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
