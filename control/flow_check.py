"""A deployment's code, located and checked before a run of it exists.

``deployment create`` and ``apply`` decide where the code lives (the deployment's
``path``: the directory the engine enters before importing) and, when that code is
reachable from where the command runs, check that the file and function exist and derive
the function's parameter schema (JSON schema, from its signature through pydantic). The
broker then refuses runs whose parameters do not fit, before anything is written.

The user's file is imported in a child process (``python -m runq.control.flow_check``),
the way the engine will import it (``runq.agent.engine.load_entrypoint``): a file that
crashes, exits, prints, hangs or leaves threads behind costs one line and a bounded wait,
never a traceback or a stuck command. Its output goes to stderr; only the child's reply,
one JSON object, reaches the parent's pipe.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Literal

from runq.broker import DeploymentSpec, InvalidInput
from runq.broker.settings import variable

__all__ = ["EntrypointError", "locate_code", "parameter_schema", "probe_entrypoint"]

SKIP_HINT = "pass --skip-validation if the code exists only where the agents run"
#: Bytes of the child's stderr kept to explain a crash (its last line).
STDERR_TAIL_BYTES = 4096
_TIMEOUT_VARIABLE = variable("entrypoint_check_seconds")


class EntrypointError(InvalidInput):
    """The deployment's code is not there, or does not import; one line says which."""


def locate_code(
    spec: DeploymentSpec, base: Path, *, skip_validation: bool, timeout: float
) -> DeploymentSpec:
    """The spec with its ``path`` defaulted and its ``parameter_schema`` derived.

    Args:
        spec: the validated deployment.
        base: the directory relative names mean: where ``create`` ran, or the YAML
            file's directory for ``apply``.
        skip_validation: check nothing and store no schema (the engine validates).
        timeout: seconds the import may take.

    Raises:
        EntrypointError: the code a process deployment names is not there or fails to
            import (a container's code, in its image, is checked only when a copy is here).
    """
    process = spec.infrastructure.type == "process"
    path = spec.path
    if path is None and process and spec.entrypoint is not None:
        path = default_path(spec.entrypoint, base)
    changes: dict[str, Any] = {"path": path}
    if not skip_validation and spec.entrypoint is not None:
        if process:
            changes["parameter_schema"] = probe_entrypoint(spec.entrypoint, path, timeout)
        elif is_here(spec.entrypoint, base):  # a copy of the image's code, here
            changes["parameter_schema"] = probe_entrypoint(spec.entrypoint, str(base), timeout)
        else:
            changes["parameter_schema"] = None
    return spec.model_copy(update=changes)


def default_path(entrypoint: str, base: Path) -> str | None:
    """``base`` (absolute) for a relative file entrypoint, or a module found under it;
    None for an absolute file or an installed module (nothing to enter)."""
    target = entrypoint.rpartition(":")[0]
    if target.endswith(".py"):
        return None if target.startswith("/") else str(base.resolve())
    return str(base.resolve()) if is_here(entrypoint, base) else None


def is_here(entrypoint: str, base: Path) -> bool:
    """Whether the entrypoint's file, or its top-level package, is under ``base``
    (found without running any of its code)."""
    target = entrypoint.rpartition(":")[0]
    if target.endswith(".py"):
        return (base / target).is_file()
    top = target.split(".")[0]
    return importlib.machinery.PathFinder.find_spec(top, [str(base)]) is not None


def probe_entrypoint(entrypoint: str, path: str | None, timeout: float) -> dict[str, Any]:
    """Import the entrypoint in a child process, as the engine will; its parameter schema.

    Raises:
        EntrypointError: the file or module is missing, does not import, has no such
            function, or the import crashed or took over ``timeout`` seconds.
    """
    quick_check(entrypoint, path)
    command = [sys.executable, "-m", "runq.control.flow_check", entrypoint, path or ""]
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(
            command,
            cwd=path or None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            bufsize=0,  # unbuffered: the ready line is read without reading past it
            start_new_session=True,  # its own group: a timeout ends what the file started
        )
        try:
            if child.stdout is not None:
                child.stdout.readline()  # runq's own start-up: only the user's import is timed
            out, _ = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(child)
            raise EntrypointError(
                f"Importing {_target(entrypoint)!r} took over {timeout:g} s and was stopped "
                f"(raise {_TIMEOUT_VARIABLE}, or {SKIP_HINT})."
            ) from None
        finally:
            _kill_group(child)  # whatever the file left running
        return _reply(entrypoint, child.returncode, out, _tail(errors))


def quick_check(entrypoint: str, path: str | None) -> None:
    """Refuse a missing directory, file or top-level module without starting a process."""
    base = Path(path) if path is not None else Path.cwd()
    if not base.is_dir():
        raise EntrypointError(f"The deployment's path {str(base)!r} is not a directory ({SKIP_HINT}).")
    target = _target(entrypoint)
    if target.endswith(".py") and not (base / target).is_file():
        raise EntrypointError(f"No flow file {target!r} in {base} ({SKIP_HINT}).")
    if not target.endswith(".py"):
        top = target.split(".")[0]
        search = [str(base)] if path is not None else []
        search += [entry for entry in sys.path if entry not in ("", os.getcwd())]
        found = top in sys.builtin_module_names or importlib.machinery.PathFinder.find_spec(top, search)
        if not found:
            raise EntrypointError(f"No module named {top!r} to import {target!r} from ({SKIP_HINT}).")


def _reply(entrypoint: str, code: int | None, out: bytes, stderr_tail: str) -> dict[str, Any]:
    try:
        reply = json.loads(out)
        if not isinstance(reply, dict):
            raise ValueError("not a reply")
    except ValueError:
        last = stderr_tail.strip().splitlines()[-1:]
        output = f"; its last output: {_one_line(last[0])!r}" if last else ", no output"
        raise EntrypointError(
            f"Importing {_target(entrypoint)!r} crashed (exit status {code}{output}); "
            f"{SKIP_HINT}."
        ) from None
    if reply.get("error"):
        raise EntrypointError(f"{_one_line(reply['error']).rstrip('.')} ({SKIP_HINT}).")
    schema: dict[str, Any] = reply["schema"]
    return schema


def _kill_group(child: "subprocess.Popen[bytes]") -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    child.wait()


def _tail(handle: Any) -> str:
    handle.seek(0, os.SEEK_END)
    handle.seek(max(handle.tell() - STDERR_TAIL_BYTES, 0))
    return str(handle.read().decode("utf-8", "replace"))


def _target(entrypoint: str) -> str:
    return entrypoint.rpartition(":")[0]


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


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
