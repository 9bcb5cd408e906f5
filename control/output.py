"""Command output: the ``--output`` option, JSON for scripts and rich tables for people.

Also the record layout of ``inspect`` commands. Text the UI shows too (the shell quoting
of printed hints, one-line messages) is runq.display.text.
"""

from __future__ import annotations

import json
import os
import pprint
import sys
from collections.abc import Sequence
from typing import Any

import click
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

#: Width used for tables when stdout is not a terminal, so piped ids are never truncated.
PIPE_WIDTH = 200


output_option = click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"], case_sensitive=False),
    default="table",
    show_default=True,
    help="Print a table for people or JSON for scripts.",
)


def wants_json(output: str) -> bool:
    return output.lower() == "json"


def to_json(value: Any) -> Any:
    """A model (or a list of them) as plain JSON data with the models' field names."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    return value


def print_json(value: Any) -> None:
    click.echo(json.dumps(to_json(value), indent=2, ensure_ascii=False))


def console() -> Console:
    """A rich console on the current stdout; wide when piped, so ids stay whole."""
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(file=sys.stdout, width=width, highlight=False)


def new_table(title: str | None, columns: Sequence[str], caption: str | None = None) -> Table:
    """A table in the style of Prefect's CLI tables; ID columns are the last to shrink."""
    table = Table(title=title, caption=caption)
    for column in columns:
        table.add_column(column, no_wrap=column.endswith("ID"))
    return table


def add_row(table: Table, *values: Any) -> None:
    """Add a row of plain text: names such as ``a[b]`` must never be read as rich markup."""
    table.add_row(*(value if isinstance(value, Text) else Text(str(value)) for value in values))


def marked(value: str, mark: bool) -> Text:
    """``value (**)`` with the mark in red, as Prefect flags paused queues and late runs."""
    text = Text(value)
    if mark:
        text.append(" (**)", style="red")
    return text


def print_table(table: Table) -> None:
    console().print(table)


def render_record(kind: str, fields: dict[str, Any]) -> str:
    """``Kind(field=value, ...)``, one field a line: the look of Prefect's ``inspect``."""
    lines = [f"{kind}("]
    for key, value in fields.items():
        indent = " " * (len(key) + 5)
        text = pprint.pformat(value, width=max(40, 96 - len(indent)), sort_dicts=False)
        lines.append(f"    {key}={text.replace(chr(10), chr(10) + indent)},")
    lines.append(")")
    return "\n".join(lines)
