"""Text both the CLI and the UI print: one-line messages and shell words in hints."""

from __future__ import annotations

import shlex


def one_line(text: str) -> str:
    """Collapse a message (a pydantic error spans lines) into the single line we print."""
    return " ".join(str(text).split())


def error_line(error: BaseException) -> str:
    """An error's message on one line; its type's name when the message is empty."""
    return one_line(str(error)) or type(error).__name__


def quoted(value: str) -> str:
    """A shell word in single quotes, as in the hints we print (``-q 'my-queue'``)."""
    return f"'{value}'" if "'" not in value else shlex.quote(value)
