"""What the CLI tests share: running ``runq`` in-process on the test Redis, reading tables.

The ``runq`` fixture itself lives in tests/conftest.py (fixtures there need no import).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from click.testing import Result

Invoke = Callable[..., Result]

#: The column separators of rich's tables: heavy in the header, light in the body.
_CELL_BORDER = re.compile("[│┃]")


def row(output: str, text: str) -> str:
    """The one table line holding ``text``."""
    lines = [line for line in output.splitlines() if text in line]
    assert len(lines) == 1, output
    return lines[0]


def cells(output: str, text: str) -> list[str]:
    """The cells, stripped, of the one table line holding ``text`` (header or body)."""
    return [cell.strip() for cell in _CELL_BORDER.split(row(output, text))[1:-1]]
