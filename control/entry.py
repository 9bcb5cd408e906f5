"""The ``runq`` console script, kept import-light.

``runq flow-run execute`` is how every flow run starts inside its infrastructure; it goes
straight to the engine's entry point (runq.engine.entry) without importing the rest of
the CLI (rich, YAML, every command group), because that start-up time is the delay
between submission and RUNNING.
"""

from __future__ import annotations

import sys

from runq.engine import entry as engine


def main() -> None:
    if sys.argv[1:3] == ["flow-run", "execute"]:
        sys.exit(engine.main(sys.argv[3:]))
    from .cli import main as cli_main

    cli_main()
