"""``runq flow-run execute RUN_ID``: the engine's entry point inside an infrastructure.

The agent runs this command; people rarely do. It is dispatched before the rest of the
CLI is imported (see ``control.cli.main``), because its start-up time is the time from a
run's submission to its RUNNING state.
"""

from __future__ import annotations

import os
import sys

USAGE = "usage: runq flow-run execute RUN_ID [--api URL]"


def main(argv: list[str]) -> int:
    """Execute one flow run; ``argv`` holds what follows ``flow-run execute``."""
    if os.environ.get("RUNQ_LOG_FORMAT") == "json":  # the agent's --log-format json
        from .log_format import json_streams

        json_streams(service=False)  # the engine's own lines on stderr as records
    from runq.broker import RunqError

    if not argv or argv[0] in ("-h", "--help"):
        print(
            f"{USAGE}\n\nExecute one claimed flow run (started by an agent, which sets "
            "RUNQ_FLOW_RUN_TOKEN).\n\nExample:\n    RUNQ_FLOW_RUN_TOKEN=7 runq flow-run execute "
            "01a2274a-df0a-7000-a4c7-288447221c35",
            file=sys.stderr if not argv else sys.stdout,
        )
        return 2 if not argv else 0
    url = None
    if len(argv) == 3 and argv[1] == "--api":
        url = argv[2]
    elif len(argv) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    from runq.agent.engine import execute

    try:
        return execute(argv[0], url)
    except RunqError as error:
        print(str(error), file=sys.stderr)
        return 1
