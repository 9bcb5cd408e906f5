"""The child that imports a deployment's code and describes its parameters.

``python -m runq.engine.code_check ENTRYPOINT PATH`` imports the entrypoint the way a run
will (:func:`runq.engine.loading.load_entrypoint`) and prints one JSON object: the
function's parameter schema (:func:`runq.engine.parameters.parameter_schema`), or the
error. The parent side (where the code is, the child's bounded wait, the one-line
refusals) is ``runq.broker.code_check``, which ``Broker.create_deployment`` and ``runq
deployment create`` / ``apply`` share; the broker starts this child by command line
rather than import the engine, which imports the user's code.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from runq.engine.loading import FlowLoadError, enter_path, load_entrypoint
from runq.engine.parameters import parameter_schema


def main(argv: list[str]) -> int:
    """``python -m runq.engine.code_check ENTRYPOINT PATH``: one JSON reply on stdout."""
    entrypoint, path = argv[0], argv[1] or None
    reply_to = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the file's prints go to stderr; stdout carries only the reply
    if sys.path and sys.path[0] in ("", os.getcwd()):
        sys.path.pop(0)  # `-m` put the cwd first; the engine imports without it
    reply: dict[str, Any]
    try:
        reply_to.write("ready\n")  # the parent's timeout starts now, with the user's code
        reply_to.flush()
        enter_path(path)
        reply = {"schema": parameter_schema(load_entrypoint(entrypoint, path))}
    except FlowLoadError as error:
        reply = {"error": str(error)}
    except BaseException as error:  # SystemExit, KeyboardInterrupt: a file may raise anything
        reply = {"error": f"checking {entrypoint!r} failed: {type(error).__name__}: {error}"}
    try:
        reply_to.write(json.dumps(reply))
    except (TypeError, ValueError) as error:
        reply_to.write(json.dumps({"error": f"the parameter schema has no JSON form: {error}"}))
    reply_to.flush()
    os._exit(0)  # threads or atexit hooks the file left must not hold the check


if __name__ == "__main__":
    main(sys.argv[1:])
