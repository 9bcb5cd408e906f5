"""The one-line error contract of every ``runq`` command.

An error is printed as one line on stderr, control characters escaped, and the command
exits non-zero; the traceback is shown only when debugging (``RUNQ_DEBUG=1``).
"""

from __future__ import annotations

import sys
import traceback
from typing import NoReturn

import click

from runq.broker.settings import debug_enabled
from runq.display.text import one_line


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\r``, ``\\x1b``): it stays on one line
    and cannot drive the terminal, whatever an operator's argument held."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` on stderr and exit with ``code``; the traceback only when debugging.

    Call it from an ``except`` block so ``RUNQ_DEBUG=1`` can show where the error came from.
    """
    if debug_enabled() and sys.exc_info()[0] is not None:
        traceback.print_exc()
    click.echo(printable(one_line(message)), err=True)
    raise click.exceptions.Exit(code)
