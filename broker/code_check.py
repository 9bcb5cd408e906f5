"""A deployment's code, located and checked before a run of it exists.

``Broker.create_deployment`` (and ``runq deployment create`` / ``apply``, which call the
same functions) decide where the code lives (the deployment's ``path``: the directory
the engine enters before importing) and, when that code is reachable from here, check
that the file and function exist and derive the function's parameter schema (JSON
schema, from its signature through pydantic). The broker then refuses runs whose
parameters do not fit, before anything is written.

The broker never imports the user's code, nor the engine that loads it: the file is
imported in a child process started by command line (``python -m
runq.engine.code_check ENTRYPOINT PATH``, the engine's own loader), so a file that
crashes, exits, prints, hangs or leaves threads behind costs one line and a bounded
wait, never a traceback or a stuck caller. Its output goes to stderr; only the child's
reply, one JSON object, reaches this process's pipe.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .errors import InvalidInput
from .models import DeploymentSpec
from .settings import variable

__all__ = [
    "API_SKIP_HINT",
    "CHILD_MODULE",
    "SKIP_HINT",
    "CodeNotChecked",
    "EntrypointError",
    "default_path",
    "is_here",
    "locate_code",
    "probe_entrypoint",
    "missing_code",
    "quick_check",
]

#: The module the child runs: it imports the entrypoint with the engine's loader.
CHILD_MODULE = "runq.engine.code_check"
SKIP_HINT = "pass --skip-validation if the code exists only where the agents run"
API_SKIP_HINT = "pass check_code=False if the code exists only where the agents run"
#: Bytes of the child's stderr kept to explain a crash (its last line).
STDERR_TAIL_BYTES = 4096
_TIMEOUT_VARIABLE = variable("entrypoint_check_seconds")


class EntrypointError(InvalidInput):
    """The deployment's code is not there, or does not import; one line says which."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message  # the message without how to skip the check


class CodeNotChecked(UserWarning):
    """``Broker.create_deployment`` stored a deployment whose code it could not find here
    (``check_code=None``): no parameter schema, and a relative file without ``path`` is
    found where the agent's infrastructure runs it. Silence it with ``check_code=False``."""


def locate_code(
    spec: DeploymentSpec,
    base: Path,
    *,
    skip_validation: bool,
    timeout: float,
    hint: str = SKIP_HINT,
) -> DeploymentSpec:
    """The spec with its ``path`` defaulted and its ``parameter_schema`` derived.

    Args:
        spec: the validated deployment.
        base: the directory relative names mean: where ``create`` ran, or the YAML
            file's directory for ``apply``.
        skip_validation: check nothing and store no schema (the engine validates).
        timeout: seconds the import may take.
        hint: how to skip the check, named in every refusal.

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
            changes["parameter_schema"] = probe_entrypoint(spec.entrypoint, path, timeout, hint)
        elif is_here(spec.entrypoint, base):  # a copy of the image's code, here
            changes["parameter_schema"] = probe_entrypoint(
                spec.entrypoint, str(base), timeout, hint
            )
        else:
            changes["parameter_schema"] = None
    return spec.model_copy(update=changes)


def missing_code(spec: DeploymentSpec, base: Path) -> str | None:
    """Why :func:`locate_code` would not find the deployment's code from ``base``, or
    None when it would (nothing is imported): its file or top-level module for a process
    deployment; a container's code is checked only when a copy is here, as by the CLI."""
    if spec.entrypoint is None or spec.infrastructure.type != "process":
        return None
    path = spec.path if spec.path is not None else default_path(spec.entrypoint, base)
    try:
        quick_check(spec.entrypoint, path, API_SKIP_HINT)
    except EntrypointError as error:
        return error.reason
    return None


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


def probe_entrypoint(
    entrypoint: str, path: str | None, timeout: float, hint: str = SKIP_HINT
) -> dict[str, Any]:
    """Import the entrypoint in a child process, as the engine will; its parameter schema.

    Raises:
        EntrypointError: the file or module is missing, does not import, has no such
            function, or the import crashed or took over ``timeout`` seconds.
    """
    quick_check(entrypoint, path, hint)
    command = [sys.executable, "-m", CHILD_MODULE, entrypoint, path or ""]
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
                f"(raise {_TIMEOUT_VARIABLE}, or {hint})."
            ) from None
        finally:
            _kill_group(child)  # whatever the file left running
        return _reply(entrypoint, child.returncode, out, _tail(errors), hint)


def quick_check(entrypoint: str, path: str | None, hint: str = SKIP_HINT) -> None:
    """Refuse a missing directory, file or top-level module without starting a process."""
    base = Path(path) if path is not None else Path.cwd()
    target = _target(entrypoint)
    reason = ""
    if not base.is_dir():
        reason = f"The deployment's path {str(base)!r} is not a directory"
    elif target.endswith(".py") and not (base / target).is_file():
        reason = f"No flow file {target!r} in {base}"
    elif not target.endswith(".py"):
        top = target.split(".")[0]
        search = [str(base)] if path is not None else []
        search += [entry for entry in sys.path if entry not in ("", os.getcwd())]
        found = top in sys.builtin_module_names or importlib.machinery.PathFinder.find_spec(
            top, search
        )
        if not found:
            reason = f"No module named {top!r} to import {target!r} from"
    if reason:
        raise EntrypointError(f"{reason} ({hint}).", reason)


def _reply(
    entrypoint: str, code: int | None, out: bytes, stderr_tail: str, hint: str
) -> dict[str, Any]:
    try:
        reply = json.loads(out)
        if not isinstance(reply, dict):
            raise ValueError("not a reply")
    except ValueError:
        last = stderr_tail.strip().splitlines()[-1:]
        output = f"; its last output: {_one_line(last[0])!r}" if last else ", no output"
        raise EntrypointError(
            f"Importing {_target(entrypoint)!r} crashed (exit status {code}{output}); {hint}."
        ) from None
    if reply.get("error"):
        raise EntrypointError(f"{_one_line(reply['error']).rstrip('.')} ({hint}).")
    schema: dict[str, Any] = reply["schema"]
    return schema


def _kill_group(child: subprocess.Popen[bytes]) -> None:
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
