"""The child that imports a deployment's code and describes its parameters.

``python -m runq.control.flow_check ENTRYPOINT PATH`` imports the entrypoint the way the
engine will (``runq.agent.engine.load_entrypoint``) and prints one JSON object: the
function's parameter schema, or the error. The parent side (where the code is, the
child's bounded wait, the one-line refusals) is ``runq.broker.code_check``, which
``Broker.create_deployment`` and ``runq deployment create`` / ``apply`` share; its names
are importable from here as before. The broker starts this child by command line rather
than import control/ or agent/ code.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any, Callable, Literal

from runq.broker.code_check import (
    SKIP_HINT,
    EntrypointError,
    default_path,
    is_here,
    locate_code,
    probe_entrypoint,
    quick_check,
)

__all__ = [
    "SKIP_HINT",
    "EntrypointError",
    "default_path",
    "is_here",
    "locate_code",
    "parameter_schema",
    "probe_entrypoint",
    "quick_check",
]


# ---- the child: import the entrypoint and describe its parameters ------------------------


def parameter_schema(function: Callable[..., Any]) -> dict[str, Any]:
    """The JSON schema of ``function``'s keyword-passable parameters (pydantic).

    A model is built from ``inspect.signature`` with ``create_model``: each parameter its
    annotation (``Any`` when missing or when pydantic has no schema for it) and default.
    ``**kwargs`` allows other parameters; positional-only and ``*args`` ones cannot be
    passed by name, so they are not parameters of a run. Fields get safe names and the
    parameter as alias (``_x``, ``json`` or ``model_config`` are valid parameter names).
    """
    import inspect
    import typing

    from pydantic import ConfigDict, Field, create_model

    signature = inspect.signature(function)
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # an unresolvable forward reference: the raw annotations
        hints = {}
    fields: dict[str, Any] = {}
    extra: Literal["allow", "forbid"] = "forbid"
    for index, parameter in enumerate(signature.parameters.values()):
        if parameter.kind is parameter.VAR_KEYWORD:
            extra = "allow"
        if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL, parameter.POSITIONAL_ONLY):
            continue
        annotation = _describable(hints.get(parameter.name, parameter.annotation))
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[f"p{index}"] = (annotation, Field(default, alias=parameter.name))
    title = getattr(function, "__name__", "parameters")
    model = create_model(title, __config__=ConfigDict(extra=extra), **fields)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a default with no JSON form is left out, as pydantic does
        schema: dict[str, Any] = model.model_json_schema(by_alias=True)
    return schema


def _describable(annotation: Any) -> Any:
    """The annotation if pydantic can describe it as JSON schema, else ``Any``."""
    import inspect

    from pydantic import TypeAdapter

    if annotation is inspect.Parameter.empty:
        return Any
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            TypeAdapter(annotation).json_schema()
    except Exception:
        return Any
    return annotation


def main(argv: list[str]) -> int:
    """``python -m runq.control.flow_check ENTRYPOINT PATH``: one JSON reply on stdout."""
    entrypoint, path = argv[0], argv[1] or None
    reply_to = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the file's prints go to stderr; stdout carries only the reply
    if sys.path and sys.path[0] in ("", os.getcwd()):
        sys.path.pop(0)  # `-m` put the cwd first; the engine imports without it
    reply: dict[str, Any]
    try:
        from runq.agent.engine import FlowLoadError, enter_path, load_entrypoint

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
