"""Parameters checked against a deployment's parameter schema before a run exists.

A deployment whose code was reachable when it was made stores the JSON schema of its
function's signature (``Deployment.parameter_schema``). Every run of it is checked here,
before anything is written, so that a missing, unknown or ill-typed parameter is refused
with one line naming it instead of taking a queue slot, being claimed and only then
FAILing. The engine still validates at execution (through pydantic, with the function
itself): the schema is the early, cheap gate, not the only one.

The check is JSON Schema (draft 2020-12, what pydantic emits), so it is strict where
pydantic's lax mode would coerce: ``"7"`` is not an integer here. Values in messages are
shortened: a parameter may be a megabyte of text.

The ``format`` of a string (``date``, ``date-time``, ``uuid``, ...) is checked too, by the
pydantic type that emits it, the way the engine will parse it: ``2024-02-30`` is refused
before a run exists, and ``2024-02-01T10:00`` (no offset, which RFC 3339 and jsonschema's
own checker refuse) is accepted, as the engine accepts it. jsonschema's checkers are not
used: several need packages runq does not install (rfc3339-validator, isoduration,
rfc3987), and without them it skips those formats silently. Formats outside
:data:`FORMAT_TYPES` (``email`` needs email-validator) are left to the engine.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import InvalidInput

if TYPE_CHECKING:  # imported where used: jsonschema costs the engine's start-up ~80 ms
    from jsonschema import FormatChecker
    from jsonschema.exceptions import ValidationError

__all__ = ["check_parameters", "check_schema", "parameter_names"]

#: Characters of a value quoted in a refusal.
MAX_VALUE_CHARS = 60
#: Parameter names listed in a refusal.
MAX_NAMES_SHOWN = 12
#: The string formats checked before a run exists: each by the most lenient pydantic type
#: that emits it (``HttpUrl`` and ``AnyUrl`` both say ``uri``), so nothing the engine
#: would accept is refused.
FORMAT_TYPES = {
    "date": "datetime.date",
    "date-time": "datetime.datetime",
    "time": "datetime.time",
    "duration": "datetime.timedelta",
    "uuid": "uuid.UUID",
    "uri": "pydantic.AnyUrl",
    "ipv4": "ipaddress.IPv4Address",
    "ipv6": "ipaddress.IPv6Address",
    "ipvanyaddress": "pydantic.IPvAnyAddress",
}


@functools.cache
def format_checker() -> FormatChecker:
    """A FormatChecker of :data:`FORMAT_TYPES` only, each parsed by pydantic (lax, as the
    engine's ``validate_call``); built once, on first use."""
    import importlib

    from jsonschema import FormatChecker
    from pydantic import TypeAdapter

    checker = FormatChecker(formats=())
    for name, dotted in FORMAT_TYPES.items():
        module, _, attribute = dotted.rpartition(".")
        adapter: TypeAdapter[Any] = TypeAdapter(getattr(importlib.import_module(module), attribute))

        def parses(instance: object, adapter: TypeAdapter[Any] = adapter) -> bool:
            if isinstance(instance, str):  # other types are the schema's `type` to judge
                adapter.validate_python(instance)
            return True

        checker.checks(name, raises=ValueError)(parses)  # pydantic's ValidationError is one
    return checker


def check_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Refuse a parameter schema that is not a valid JSON schema of an object.

    Checked when a deployment is written, so that checking a run never meets a broken
    schema.

    Raises:
        ValueError: one line saying what is wrong (pydantic turns it into the field's error).
    """
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        where = "/".join(str(part) for part in error.path)
        raise ValueError(
            f"not a valid JSON schema{f' at {where}' if where else ''}: "
            f"{_short(error.message, 200)}"
        ) from None
    if schema.get("type", "object") != "object":
        raise ValueError("a parameter schema must describe an object (type 'object')")
    return schema


def parameter_names(schema: dict[str, Any]) -> list[str]:
    """The parameters the schema names, in the function's order."""
    properties = schema.get("properties")
    return list(properties) if isinstance(properties, dict) else []


def check_parameters(
    schema: dict[str, Any] | None, parameters: dict[str, Any], *, partial: bool = False
) -> None:
    """Refuse parameters that do not fit ``schema`` (``None``: nothing to check).

    Args:
        schema: the deployment's parameter schema.
        parameters: the run's parameters, the deployment's defaults merged in.
        partial: only unknown and ill-typed parameters are refused, not missing ones
            (a deployment's defaults need not name every required parameter).

    Raises:
        InvalidInput: one line naming the first parameter that is missing, unknown or of
            the wrong type.
    """
    if schema is None:
        return
    from jsonschema import Draft202012Validator

    errors = [
        error
        for error in Draft202012Validator(schema, format_checker=format_checker()).iter_errors(
            parameters
        )
        if not (partial and error.validator == "required" and not error.path)
    ]
    if errors:
        raise InvalidInput(_describe(schema, _first(errors), parameters))


def _first(errors: Iterable[ValidationError]) -> ValidationError:
    """Missing and unknown parameters first, then by the parameter's name: one stable
    message whatever order the validator found them in."""
    rank = {"required": 0, "additionalProperties": 1}
    return min(
        errors,
        key=lambda e: (bool(e.path), rank.get(str(e.validator), 2), [str(p) for p in e.path]),
    )


def _describe(schema: dict[str, Any], error: ValidationError, parameters: dict[str, Any]) -> str:
    names = parameter_names(schema)
    shown = ", ".join(_short(name) for name in names[:MAX_NAMES_SHOWN])
    more = f" and {len(names) - MAX_NAMES_SHOWN} more" if len(names) > MAX_NAMES_SHOWN else ""
    takes = f" (the flow takes: {shown}{more})" if names else " (the flow takes none)"
    if not error.path and error.validator == "required":
        required = error.validator_value if isinstance(error.validator_value, list) else []
        missing = [name for name in required if name not in parameters]
        listed = ", ".join(repr(name) for name in missing)
        return f"Missing parameter{'s' if len(missing) > 1 else ''} {listed}{takes}."
    if not error.path and error.validator == "additionalProperties":
        allowed = set(names)
        unknown = sorted(name for name in parameters if name not in allowed)
        listed = ", ".join(repr(_short(name)) for name in unknown)
        return f"Unknown parameter{'s' if len(unknown) > 1 else ''} {listed}{takes}."
    if not error.path:
        return f"Invalid parameters: {_short(error.message, 200)}."
    name, *inner = [str(part) for part in error.path]
    where = f" at {'.'.join(inner)}" if inner else ""
    value = _short(repr(error.instance))
    expected = _expected(error)
    return f"Parameter {_short(name)!r}{where}: {value} {expected}."


def _expected(error: ValidationError) -> str:
    """``is not of type 'integer'`` and the like, without repeating a long value."""
    if error.validator in ("anyOf", "oneOf"):  # Optional[date]: the string's own reason
        formats = [inner for inner in error.context or () if inner.validator == "format"]
        if formats:
            error = formats[0]
    if error.validator == "format":
        return f"is not a valid {error.validator_value} ({_format_reason(error)})"
    if error.validator == "type":
        wanted = error.validator_value
        kinds = (
            " or ".join(repr(kind) for kind in wanted) if isinstance(wanted, list) else repr(wanted)
        )
        return f"is not of type {kinds}"
    if error.validator in ("anyOf", "oneOf"):
        return "fits none of the types the flow accepts"
    if error.validator == "enum":
        return f"is not one of {_short(repr(error.validator_value), 120)}"
    return f"is invalid ({_short(error.message, 120)})"


def _format_reason(error: ValidationError) -> str:
    """``day value is outside expected range``: pydantic's reason, without its preamble."""
    cause = error.cause
    errors = getattr(cause, "errors", None)
    message = str(errors()[0]["msg"]) if callable(errors) else str(cause or error.message)
    if message.startswith("Input should be") and ", " in message:
        message = message.split(", ", 1)[1]
    return _short(message, 120)


def _short(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
