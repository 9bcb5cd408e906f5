"""The checked field types of runq's models: names, entrypoints, JSON objects within
their bounds, text Redis can take, byte bounds and their messages."""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic_core import PydanticSerializationError, to_json

from .errors import InvalidInput

NAME_MAX_LENGTH = 100
_FORBIDDEN_NAME_CHARACTERS = set("{}:")


def validate_name(value: str) -> str:
    """Check a queue or deployment name.

    Braces would break the ``{q:NAME}`` hash tag that keeps a queue's keys in one cluster
    slot, and ``:`` separates key segments, so all three are refused with control
    characters.
    """
    if not value or not value.strip():
        raise ValueError("a name must not be empty")
    if len(value) > NAME_MAX_LENGTH:
        raise ValueError(f"a name must be at most {NAME_MAX_LENGTH} characters")
    if not value.isprintable():
        raise ValueError("a name must not contain control characters")
    bad = sorted(_FORBIDDEN_NAME_CHARACTERS.intersection(value))
    if bad:
        raise ValueError(f"a name must not contain {' '.join(repr(c) for c in bad)}")
    return value


Name = Annotated[str, AfterValidator(validate_name)]

#: Longest flow run name: a name is shown whole in listings, pages and log records.
RUN_NAME_MAX_LENGTH = 200


def validate_run_name(value: str) -> str:
    """Check a flow run's name (empty: one is generated, see ``names.generate_run_name``).

    The name goes into listings, pages and every log line an agent echoes for the run,
    so it is held to one printable line as queue names are: a newline or another C0/C1
    control would let a name forge log lines (a record of its own in a JSON log), and a
    format character such as the bidi override U+202E makes ``run\u202eexe.txt`` show as
    ``runtxt.exe``. Braces and colons are fine: a run name is never part of a key.
    """
    if len(value) > RUN_NAME_MAX_LENGTH:
        raise ValueError(f"a flow run name must be at most {RUN_NAME_MAX_LENGTH} characters")
    if not value.isprintable():
        shown = repr(value if len(value) <= 60 else value[:60] + "...")
        raise ValueError(
            f"invalid flow run name {shown}: it must not contain control characters "
            "(newlines, tabs, terminal escapes) or invisible formatting characters "
            "(such as the bidi override U+202E)"
        )
    return value


RunName = Annotated[str, AfterValidator(validate_run_name)]

_MODULE_ENTRYPOINT = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
_PATH_ENTRYPOINT = re.compile(r"^[^:]+\.py:[A-Za-z_][\w]*$")


def validate_entrypoint(value: str) -> str:
    """Accept ``path/to/file.py:func`` or ``package.module:func``."""
    if _PATH_ENTRYPOINT.match(value) or _MODULE_ENTRYPOINT.match(value):
        return value
    raise ValueError(
        "an entrypoint must look like 'path/to/file.py:function' or 'package.module:function'"
    )


Entrypoint = Annotated[str, AfterValidator(validate_entrypoint)]

#: Nesting and size bounds of JSON data (parameters): far beyond real use, well within
#: what the JSON encoders and pydantic's serializer (about 250 levels) accept.
JSON_MAX_DEPTH = 64
JSON_MAX_NODES = 100_000

#: Default byte bounds of what is stored, in bytes of the compact JSON runq stores: a
#: run's parameters (also a deployment's default parameters) and a whole deployment
#: record. ``BrokerSettings.max_parameters_bytes`` / ``max_deployment_bytes`` (variables
#: RUNQ_MAX_PARAMETERS_BYTES / RUNQ_MAX_DEPLOYMENT_BYTES) change them.
MAX_PARAMETERS_BYTES = 1_048_576
MAX_DEPLOYMENT_BYTES = 1_048_576
#: The largest bound a setting may hold: Redis refuses a longer string (proto-max-bulk-len).
MAX_BOUND_BYTES = 512 * 1024 * 1024
#: A byte bound setting: at least 1 byte, at most what Redis can store.
BoundBytes = Annotated[int, Field(ge=1, le=MAX_BOUND_BYTES)]


def describe_bytes(size: int) -> str:
    """``2,097,152 bytes``; an astronomical size (an alias bomb's) in scientific notation."""
    return f"{size:,} bytes" if size < 10**15 else f"{float(size):.1e} bytes"


def check_bytes(what: str, size: int, limit: int, variable: str, *, how: str = "") -> None:
    """Refuse ``size`` bytes over ``limit`` with one line: the size, the limit, the setting.

    ``what`` is the subject with its verb (``Parameters are``, ``The deployment is``);
    ``how`` qualifies the size (``at least``).

    Raises:
        InvalidInput: ``size > limit``; nothing has been written.
    """
    if size > limit:
        shown = f"{how} {describe_bytes(size)}" if how else describe_bytes(size)
        raise InvalidInput(
            f"{what} {shown} as JSON, over the limit of {limit:,} bytes (raise it with {variable})."
        )


def _is_plain_json(value: Any) -> bool:
    """Check the bounds; True when ``value`` is JSON data already (nothing to convert).

    The walk is bounded in depth and in values visited, so a self-containing list or a
    YAML alias bomb is refused quickly (a cycle counts as too deep) instead of ending in
    a RecursionError or an endless walk. Runs are created by the thousand, so plain data
    (the usual case) is checked here without being serialized.
    """
    return _plain(value, 0, [JSON_MAX_NODES])


def _plain(item: Any, depth: int, budget: list[int]) -> bool:
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"JSON data must not hold more than {JSON_MAX_NODES} values")
    kind = type(item)
    if kind is str:
        return item.isascii() or is_utf8(item)
    if kind is int or kind is bool or item is None:
        return True
    if kind is float:
        return math.isfinite(item)
    if kind is dict:
        children, plain = item.values(), all(type(key) is str for key in item)
    elif kind in (list, tuple, set, frozenset):
        children, plain = item, kind is list
    else:
        return False  # a date, bytes, an object...: the serializer converts or refuses it
    if depth >= JSON_MAX_DEPTH:
        raise ValueError(f"JSON data must not be nested more than {JSON_MAX_DEPTH} levels deep")
    for child in children:
        plain = _plain(child, depth + 1, budget) and plain
    return plain


def is_utf8(text: str) -> bool:
    """False for a lone surrogate (how Python decodes bytes that are not UTF-8): Redis
    and JSON cannot be sent it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON data: numbers must be finite")


def validate_json_object(value: dict[str, Any]) -> dict[str, Any]:
    """Parameters as the JSON they are stored as, so what a flow gets is what was given.

    Dates, sets and tuples become strings and lists (as they always did when stored);
    NaN, infinities, undecodable bytes, lone surrogates, unknown objects, cycles and
    absurd nesting are refused here, before anything is written.
    """
    if _is_plain_json(value):
        return value
    try:
        plain: dict[str, Any] = json.loads(
            to_json(value, inf_nan_mode="constants"), parse_constant=_refuse_constant
        )
        return plain
    except PydanticSerializationError as error:
        reason = " ".join(str(error).removeprefix("Error serializing to JSON: ").split())
        raise ValueError(f"not JSON data ({reason})") from None


JsonObject = Annotated[dict[str, Any], AfterValidator(validate_json_object)]
#: A finite number of seconds >= 0 (JSON has no infinity: it would be stored as null).
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def infer_schedule_type(value: Any) -> Any:
    """Let a hand-written schedule omit ``type``: ``{cron: "0 * * * *"}`` is a cron."""
    if isinstance(value, dict) and "type" not in value:
        kinds = [kind for kind in ("cron", "interval", "rrule") if kind in value]
        if len(kinds) == 1:
            return {**value, "type": kinds[0]}
    return value
