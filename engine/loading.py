"""Loading a deployment's code: entering its ``path`` and importing its entrypoint.

The engine does this before each run, and the deployment check does it in a child
process (:mod:`runq.engine.code_check`) before the deployment is stored, with these same
functions, so a file that the check accepted is imported by the run the same way.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


class FlowLoadError(Exception):
    """The entrypoint could not be imported or its parameters do not fit it."""


def enter_path(path: str | None) -> None:
    """Enter the deployment's ``path`` (its code's directory) and import from it first.

    None keeps the working directory the infrastructure gave (a container image's).
    """
    if path is None:
        return
    try:
        os.chdir(path)
    except OSError as error:
        raise FlowLoadError(
            f"cannot enter the deployment's path {path!r}: {error.strerror}"
        ) from None
    sys.path.insert(0, path)


def load_entrypoint(entrypoint: str, path: str | None = None) -> Callable[..., Any]:
    """Import ``path/to/file.py:func`` or ``pkg.mod:func``.

    A relative file resolves against ``path`` (the deployment's code directory), never
    against whatever directory the process was started in; without ``path``, against the
    working directory.
    """
    target, _, name = entrypoint.rpartition(":")
    try:
        base = Path(path) if path is not None else Path.cwd()
        if target.endswith(".py"):
            path_of_file = (base / target).resolve()
            spec = importlib.util.spec_from_file_location(path_of_file.stem, path_of_file)
            if spec is None or spec.loader is None or not path_of_file.is_file():
                raise FlowLoadError(f"no flow file {target!r} in {base}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[path_of_file.stem] = module
            sys.path.insert(0, str(path_of_file.parent))
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except FlowLoadError:
        raise
    except Exception as error:
        raise FlowLoadError(f"cannot import {target!r}: {type(error).__name__}: {error}") from error
    function: object = getattr(module, name, None)
    if not callable(function):
        raise FlowLoadError(f"{target!r} has no function {name!r}")
    return function
