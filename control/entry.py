"""The ``runq`` console script, kept import-light.

``runq flow-run execute`` is how every flow run starts inside its infrastructure; it goes
straight to the engine without importing the rest of the CLI (rich, YAML, every command
group), because that start-up time is the delay between submission and RUNNING.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:3] == ["flow-run", "execute"]:
        from .execute import main as execute

        sys.exit(execute(sys.argv[3:]))
    from .cli import main as cli_main

    cli_main()
