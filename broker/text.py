"""Text of run logs: the size a stored line may have, and making a line safe to print.

A flow's output is stored as it was printed, escape sequences included (``flow-run logs
--raw`` gives it back so). Whatever shows it on a terminal (``runq flow-run logs``, the
agent's and the engine's echo) first passes it through :func:`strip_controls`, so a
flow cannot move the cursor, retitle the window, write the clipboard (OSC 52), hide
lines or answer as the user on an operator's terminal.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

from .models import MAX_BOUND_BYTES

#: The longest message one log entry holds, in UTF-8 bytes. Longer lines are split into
#: entries of at most this size (at a character boundary), so one line of any length, a
#: 100 MB output without a newline for one, becomes many bounded entries. Just under
#: 16 KiB so that an entry with its stream header fits one 16 KiB allocation in Redis.
LOG_LINE_MAX_BYTES = 16_000

#: What a log line costs against its run's byte budget beyond its message's bytes: about
#: what Redis spends per stream entry, so a run printing millions of empty lines is
#: bounded by the same budget as one printing long ones.
LOG_LINE_OVERHEAD = 32

#: The streams of a log line: what the flow printed, and what runq says about the run.
LOG_STREAMS = ("stdout", "stderr", "engine")

#: The default log budget of a run, in bytes as costed above (``BrokerSettings.
#: log_max_bytes_per_run``, variable RUNQ_LOG_MAX_BYTES_PER_RUN): beyond it the oldest
#: lines are dropped, and readers get a first line saying how many.
LOG_MAX_BYTES_PER_RUN = 4 * 1024 * 1024
#: A log budget: room for one line of the longest size at least, at most what Redis stores.
LogBudget = Annotated[int, Field(ge=LOG_LINE_MAX_BYTES + LOG_LINE_OVERHEAD, le=MAX_BOUND_BYTES)]

# Every terminal control sequence (ECMA-48), in the order they are tried:
# - string sequences, OSC (ESC ] or 0x9d), DCS (ESC P), SOS (ESC X), PM (ESC ^), APC (ESC _):
#   up to BEL or ST (ESC \ or 0x9c), or to the end of the line when unterminated;
# - CSI (ESC [ or 0x9b): parameter bytes, intermediate bytes, one final byte;
# - any other escape (ESC, intermediate bytes, one final byte), a lone ESC included;
# - the remaining C0 controls (tab excepted), DEL and the C1 controls.
_CONTROLS = re.compile(
    r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]).*?(?:\x07|\x1b\\|\x9c|\Z)"
    r"|(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"
    r"|[\x00-\x08\x0a-\x1f\x7f-\x9f]",
    re.DOTALL,
)
# Every sequence above starts with one of these: a line without any is returned as is.
_ANY_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def strip_controls(line: str) -> str:
    """``line`` without terminal control sequences and control characters (tab kept).

    Colors (SGR), cursor moves, OSC strings (window title, hyperlinks, clipboard) and
    the other escapes are removed whole, terminated or not; so are the C0 controls
    other than tab (carriage return and backspace included), DEL and the C1 controls.
    What is left is text a terminal prints as it is.
    """
    if _ANY_CONTROL.search(line) is None:
        return line
    return _CONTROLS.sub("", line)


def utf8_cut(data: bytes | bytearray | memoryview, start: int, limit: int) -> int:
    """The end of the piece of ``data`` starting at ``start`` that holds at most
    ``limit`` bytes and does not cut a UTF-8 character (unless the bytes are not UTF-8).
    """
    end = start + limit
    if end >= len(data):
        return len(data)
    cut = end
    while cut > end - 3 and cut > start and (data[cut] & 0xC0) == 0x80:
        cut -= 1  # data[cut] continues a character: cut before the character starts
    return cut if cut > start and (data[cut] & 0xC0) != 0x80 else end


def split_utf8(data: bytes, limit: int = LOG_LINE_MAX_BYTES) -> list[bytes]:
    """``data`` in pieces of at most ``limit`` bytes, cut between UTF-8 characters
    (``[data]`` when it is short enough, ``[b""]`` when it is empty)."""
    if len(data) <= limit:
        return [data]
    pieces, start = [], 0
    while start < len(data):
        end = utf8_cut(data, start, limit)
        pieces.append(data[start:end])
        start = end
    return pieces


def format_bytes(count: float) -> str:
    """``1536`` -> ``1.5 KiB``: sizes in the log's own messages."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def log_marker(lines: int, size: int, budget: int, since_read: bool = False) -> str:
    """The line a reader sees where a run's log lost its oldest lines to its budget.

    ``since_read``: the lines went while this reader was reading (it had read up to a
    line that is gone now); otherwise ``lines`` and ``size`` are everything dropped.
    """
    keeps = f"the log keeps the last {format_bytes(budget)} of each run; RUNQ_LOG_MAX_BYTES_PER_RUN"
    if since_read:
        return f"[runq: earlier lines were dropped before they were read: {keeps}]"
    noun = "line" if lines == 1 else "lines"
    return f"[runq: {lines} earlier {noun} ({format_bytes(size)}) dropped: {keeps}]"
