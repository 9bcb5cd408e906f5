"""The engine's entry point: ``python -m runq.engine RUN_ID``, and ``runq flow-run execute
RUN_ID``, the command the infrastructures start, which calls the same :func:`main`.

It imports the engine and nothing of the CLI (rich, YAML, every command group), because
its start-up time is the time from a run's submission to its RUNNING state.
"""

from __future__ import annotations

import sys

from .records import echo_format_is_json, json_stderr

USAGE = "usage: runq flow-run execute RUN_ID [--api URL]"


def main(argv: list[str]) -> int:
    """Execute one flow run; ``argv`` holds the run id and optionally ``--api URL``
    (what follows ``flow-run execute``). Returns the process's exit status."""
    if echo_format_is_json():  # the agent's --log-format json, inherited
        json_stderr()  # the engine's own lines on stderr as records
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
    from .execution import execute

    try:
        return execute(argv[0], url)
    except RunqError as error:
        print(str(error), file=sys.stderr)
        return 1
