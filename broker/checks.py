"""Input checks every Broker method makes before it writes: names, run ids, text Redis can
take, limits, byte bounds, and pydantic validation as one readable line."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel, ValidationError

from .errors import InvalidInput
from .field_types import check_bytes, is_utf8, validate_name

Model = TypeVar("Model", bound=BaseModel)
JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # built once: dumps() is slow
_JSON = JSON

__all__ = [
    "JSON",
    "check_bytes",
    "check_limit",
    "check_text",
    "checked_name",
    "checked_run_id",
    "ms",
    "validated",
]


def validated(model: type[Model], data: dict[str, Any]) -> Model:
    """``model(**data)``, with a validation failure as one readable InvalidInput line."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidInput(f"{where}: {message}" if where else message) from None


def checked_name(name: str, what: str = "work queue") -> str:
    try:
        return validate_name(name)
    except ValueError as error:
        raise InvalidInput(f"Invalid {what} name {name!r}: {error}.") from None


def checked_run_id(run_id: str | UUID) -> str:
    try:
        return str(UUID(str(run_id)))
    except ValueError:
        raise InvalidInput(f"{str(run_id)!r} is not a valid flow run id.") from None


def check_limit(limit: Any) -> int:
    """A concurrency limit: an integer >= 0."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidInput(f"Invalid concurrency limit {limit!r}: it must be an integer >= 0.")
    return limit


def ms(seconds: float) -> int:
    """Seconds as whole milliseconds (what the scripts take)."""
    return int(seconds * 1000)


def check_text(arguments: Iterable[Any]) -> None:
    """Refuse a string Redis cannot be sent (a lone surrogate, as Python decodes bytes that
    are not UTF-8) before anything is written, rather than fail halfway through.

    Looks at each argument and the strings of a list argument (tags, states); what is
    inside a dict (parameters) is the models' to check."""
    for value in arguments:
        texts = [value] if isinstance(value, str) else []
        if isinstance(value, (list, tuple, set, frozenset)):
            texts = [item for item in value if isinstance(item, str)]
        for text in texts:
            if not is_utf8(text):
                shown = text if len(text) <= 40 else text[:40] + "..."
                raise InvalidInput(f"{shown!r} is not valid text (it is not UTF-8).")
